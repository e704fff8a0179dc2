"""Which process owns a piece of work: this host's name and whether a pid on it is alive."""

from __future__ import annotations

import os
import re
import socket


def this_host() -> str:
    """This host's name, letters and digits only (fit for a file name)."""
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"


def pid_alive(pid: int) -> bool:
    """True when a process ``pid`` runs on this host (whoever owns it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:     # alive, run by another user
        pass
    return True
