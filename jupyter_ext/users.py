"""Who owns the jobs of this process (a leaf: the server, the CLI and the handlers all ask it).

Under JupyterHub each hub user owns theirs (handlers.owner_of reads the request); in a personal
server and on the command line it is the account running the process: jupyter-server's own user
names are random per start, so they cannot own anything that outlives it.
"""

from __future__ import annotations

import getpass
import os


def local_user() -> str:
    """The account running this process: owner of every job in a personal server."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid{os.getuid()}"
