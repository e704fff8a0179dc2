"""``python -m trajplan`` runs the command line."""

from trajplan.cli import main

raise SystemExit(main())
