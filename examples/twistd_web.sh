#!/bin/sh
# Serve a directory through the relay with stock `twistd web`.
#
#   export HYCO_CONNECTION_STRING=...     # from `txhyco relay`
#   sh examples/twistd_web.sh [DIRECTORY] [PATH]
#
# Files in DIRECTORY appear at http(s)://NAMESPACE/PATH/... for senders with a token.
set -eu
: "${HYCO_CONNECTION_STRING:?Set HYCO_CONNECTION_STRING to the connection string printed by txhyco relay}"
exec twistd -n --pidfile= web --listen "hyco:connectionStringEnv=HYCO_CONNECTION_STRING:path=${2:-files}" --path "${1:-.}"
