"""Stand-in for the `pulumi-resource-command` 1.2.1 provider plugin, written in Python.

It serves the Pulumi ResourceProvider gRPC protocol for `command:local:Command` and
`command:remote:Command` so that the unmodified `pulumi_command` SDK works without the upstream
Go binary. See README.md for the semantics it implements and what it lacks.
"""

PROVIDER_NAME = "command"
PROVIDER_VERSION = "1.2.1"
LOCAL_COMMAND = "command:local:Command"
REMOTE_COMMAND = "command:remote:Command"
