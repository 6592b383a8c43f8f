#!/bin/bash
# gemnar-lb-wait --mode spare|back --member IP:PORT [--count N] [--timeout S]: the controller's
# side of a rolling app update, run by Pulumi over SSH around each worker's turn. "spare":
# wait until N members besides IP:PORT are healthy in the upstream (before it is drained);
# "back": wait until IP:PORT is healthy in the upstream again. Exits 1, saying what it saw,
# when the bound passes.
set -euo pipefail
cd '@{project_dir}'
exec '@{python}' -m healthmon wait --settings '@{settings_file}' "$@"
