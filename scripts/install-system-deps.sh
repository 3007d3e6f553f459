#!/usr/bin/env bash
# Installs the Debian packages the test suite drives (real clients and peers).
# Idempotent: installs only what is missing. Needs root (or sudo) when something is missing.
set -euo pipefail
need=()
check() { command -v "$1" >/dev/null 2>&1 || need+=("$2"); }
check swaks swaks
check curl curl
check msmtp msmtp
check mbsync isync
check fetchmail fetchmail
check getmail getmail6
check offlineimap offlineimap3
check openssl openssl
# swaks needs these Perl modules for STARTTLS and AUTH (only "Recommends", which we skip)
perl -MNet::SSLeay -e1 >/dev/null 2>&1 || need+=(libnet-ssleay-perl)
perl -MIO::Socket::SSL -e1 >/dev/null 2>&1 || need+=(libio-socket-ssl-perl)
perl -MAuthen::SASL -e1 >/dev/null 2>&1 || need+=(libauthen-sasl-perl)
check chromium chromium  # the webmail's browser tests (Playwright drives /usr/bin/chromium)
[ -x /usr/sbin/postfix ] || need+=(postfix)
[ -x /usr/sbin/dovecot ] || need+=(dovecot-imapd)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
echo "installing system packages: ${need[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
if [ -n "$(printf '%s\n' "${need[@]}" | grep -x postfix)" ]; then
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
