#!/bin/sh
# Register Mispers' custom search attributes on the Temporal namespace, idempotently.
#
#   register-search-attributes.sh EpisodeStatus=Keyword RiskLevel=Keyword ...
#
# Connection settings are the service's own MISPERS_TEMPORAL_* variables, handed to the
# `temporal` CLI under their envconfig names (TEMPORAL_*), so the Job needs no extra settings:
# MISPERS_TEMPORAL_ADDRESS (required), MISPERS_TEMPORAL_NAMESPACE, MISPERS_TEMPORAL_TLS,
# MISPERS_TEMPORAL_TLS_CERT, MISPERS_TEMPORAL_TLS_KEY, MISPERS_TEMPORAL_TLS_CA,
# MISPERS_TEMPORAL_TLS_SERVER_NAME, MISPERS_TEMPORAL_API_KEY.
#
# An attribute that already exists with the same type is fine (run it on every deploy); one that
# exists with another type stops the script with a message, since the workflows would fail to
# upsert it. The server may still be starting: the script waits for it (up to ~2 minutes).
set -eu

: "${MISPERS_TEMPORAL_ADDRESS:?MISPERS_TEMPORAL_ADDRESS must name the Temporal frontend (host:port)}"
if [ "$#" -eq 0 ]; then
    echo "usage: $0 NAME=Type [NAME=Type ...]" >&2
    exit 2
fi

TEMPORAL_BIN="${TEMPORAL_BIN:-temporal}"
PYTHON_BIN="${PYTHON_BIN:-python3}"
export TEMPORAL_ADDRESS="$MISPERS_TEMPORAL_ADDRESS"
export TEMPORAL_NAMESPACE="${MISPERS_TEMPORAL_NAMESPACE:-default}"
if [ -n "${MISPERS_TEMPORAL_TLS:-}" ]; then export TEMPORAL_TLS="$MISPERS_TEMPORAL_TLS"; fi
if [ -n "${MISPERS_TEMPORAL_TLS_CERT:-}" ]; then export TEMPORAL_TLS_CLIENT_CERT_PATH="$MISPERS_TEMPORAL_TLS_CERT"; fi
if [ -n "${MISPERS_TEMPORAL_TLS_KEY:-}" ]; then export TEMPORAL_TLS_CLIENT_KEY_PATH="$MISPERS_TEMPORAL_TLS_KEY"; fi
if [ -n "${MISPERS_TEMPORAL_TLS_CA:-}" ]; then export TEMPORAL_TLS_SERVER_CA_CERT_PATH="$MISPERS_TEMPORAL_TLS_CA"; fi
if [ -n "${MISPERS_TEMPORAL_TLS_SERVER_NAME:-}" ]; then export TEMPORAL_TLS_SERVER_NAME="$MISPERS_TEMPORAL_TLS_SERVER_NAME"; fi
# The API key travels in the environment, never on a command line (visible in /proc).
if [ -n "${MISPERS_TEMPORAL_API_KEY:-}" ]; then export TEMPORAL_API_KEY="$MISPERS_TEMPORAL_API_KEY"; fi

echo "namespace $TEMPORAL_NAMESPACE at $TEMPORAL_ADDRESS"
tries=0
until "$TEMPORAL_BIN" operator namespace describe --namespace "$TEMPORAL_NAMESPACE" >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -ge "${WAIT_TRIES:-60}" ]; then
        echo "Temporal at $TEMPORAL_ADDRESS did not answer for namespace $TEMPORAL_NAMESPACE:" >&2
        "$TEMPORAL_BIN" operator namespace describe --namespace "$TEMPORAL_NAMESPACE" >&2 || true
        exit 1
    fi
    sleep 2
done

# The registered type of one attribute ("" if absent), in the CLI's spelling (Keyword, Int...).
registered_type() {
    "$TEMPORAL_BIN" operator search-attribute list --output json | "$PYTHON_BIN" -c '
import json, sys
names = {"TEXT": "Text", "KEYWORD": "Keyword", "INT": "Int", "DOUBLE": "Double",
         "BOOL": "Bool", "DATETIME": "Datetime", "KEYWORD_LIST": "KeywordList"}
raw = json.load(sys.stdin).get("customAttributes", {}).get(sys.argv[1], "")
print(names.get(raw.replace("INDEXED_VALUE_TYPE_", ""), raw))
' "$1"
}

status=0
for pair in "$@"; do
    name=${pair%%=*}
    type=${pair#*=}
    if [ -z "$name" ] || [ "$name" = "$pair" ] || [ -z "$type" ]; then
        echo "bad argument '$pair': expected NAME=Type" >&2
        exit 2
    fi
    if out=$("$TEMPORAL_BIN" operator search-attribute create --name "$name" --type "$type" 2>&1); then
        :
    else
        case "$out" in
            *"already exists"* | *"AlreadyExists"*) ;;
            *)
                echo "$name: $out" >&2
                exit 1
                ;;
        esac
    fi
    actual=$(registered_type "$name")
    if [ "$actual" = "$type" ]; then
        echo "ok $name $type"
    else
        echo "CONFLICT $name: registered as '${actual:-nothing}', Mispers needs $type" >&2
        status=1
    fi
done
exit "$status"
