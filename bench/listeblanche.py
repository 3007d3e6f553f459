"""Liste blanche load time at the scale of the whole published list.

Builds a list of ``--factor`` times the shared corpus (619 entries) with our writer, then
times ``parse_liste_blanche`` (median of ``--runs``) and a DN lookup. Usage:

    PYTHONPATH=src python bench/listeblanche.py ../shared/corpora/trust/<file>.xml [--factor 11]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

from caducee.trust.dn import DistinguishedName
from caducee.trust.listeblanche import ListeBlanche, parse_liste_blanche, serialise_liste_blanche


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--factor", type=int, default=11)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    base = parse_liste_blanche(args.corpus.read_bytes())
    big = serialise_liste_blanche(ListeBlanche(base.generated, base.entries * args.factor))
    times, cpu = [], []
    for _ in range(args.runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        liste = parse_liste_blanche(big)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    dn = DistinguishedName.parse(base.entries[0].dn)
    start = time.perf_counter()
    for _ in range(100_000):
        liste.dn_listed_for(base.entries[0].name, dn)
    lookup_us = (time.perf_counter() - start) * 10
    print(f"command: {' '.join(sys.argv)}")
    print(f"machine: {platform.platform()}, Python {platform.python_version()}")
    print(f"list: {len(liste.entries)} entries, {len(big) / 1e6:.1f} MB")
    print(
        f"parse: CPU median {statistics.median(cpu) * 1000:.0f} ms; wall median "
        f"{statistics.median(times) * 1000:.0f} ms, min {min(times) * 1000:.0f} ms"
    )
    print(f"dn_listed_for: {lookup_us:.2f} µs per lookup")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
