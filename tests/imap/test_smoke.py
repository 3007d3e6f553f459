from imap_harness import Transcript


def test_smoke(client: Transcript) -> None:
    print(client.cmd("a LIST \"\" *").decode())
    print(client.cmd("b SELECT INBOX").decode())
