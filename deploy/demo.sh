#!/bin/sh
# The local stack's demo (docker-compose.yml runs it in the `tools` image):
#
#   demo.sh setup     configure the demo integration's webhook through the
#                     management API and write its secret where the receiver
#                     reads it (service webhook-setup, runs on every `up`)
#   demo.sh publish   publish one event of each type and wait until the
#                     receiver has verified and accepted them (service demo)
#
# It uses only the dispatcher's public interfaces: the management API (curl)
# and `dispatcher publish` (the publisher package scan services use). The
# webhook secret is never printed.
set -eu

: "${DISPATCHER_URL:?set DISPATCHER_URL, e.g. http://dispatcher-1:8080}"
: "${DISPATCHER_ADMIN_TOKEN:?set DISPATCHER_ADMIN_TOKEN}"
: "${DEMO_INTEGRATION_ID:?set DEMO_INTEGRATION_ID (a UUID)}"

EVENTS="file_scan.submitted file_scan.completed file_scan.failed"

say() { printf 'demo: %s\n' "$*"; }
fail() { printf 'demo: %s\n' "$*" >&2; exit 1; }

# api METHOD PATH [JSON]: one management API call; prints the body, fails
# (showing the error body) on a non-2xx answer.
api() {
	method=$1 path=$2
	shift 2
	if [ $# -gt 0 ]; then
		curl --silent --show-error --fail-with-body --max-time 10 -X "$method" \
			-H "Authorization: Bearer $DISPATCHER_ADMIN_TOKEN" \
			-H 'Content-Type: application/json' --data "$1" "$DISPATCHER_URL$path"
	else
		curl --silent --show-error --fail-with-body --max-time 10 -X "$method" \
			-H "Authorization: Bearer $DISPATCHER_ADMIN_TOKEN" "$DISPATCHER_URL$path"
	fi
}

setup() {
	: "${DEMO_WEBHOOK_URL:?set DEMO_WEBHOOK_URL}"
	: "${SECRETS_FILE:?set SECRETS_FILE}"
	events_json=$(printf '"%s",' $EVENTS)
	config="{\"enabled\":true,\"url\":\"$DEMO_WEBHOOK_URL\",\"events\":[${events_json%,}]}"
	say "configuring the webhook of integration $DEMO_INTEGRATION_ID -> $DEMO_WEBHOOK_URL"
	tries=1
	# The API is ready when the dispatcher is healthy; a few tries cover a
	# transient 503 (e.g. the config cache confirming its generation).
	until api PUT "/v1/integrations/$DEMO_INTEGRATION_ID/webhook" "$config" >/dev/null; do
		[ "$tries" -lt 5 ] || fail "could not configure the webhook (see the error above)"
		tries=$((tries + 1))
		sleep 2
	done
	body=$(api GET "/v1/integrations/$DEMO_INTEGRATION_ID/webhook/secret")
	secret=$(printf '%s' "$body" | sed -n 's/.*"secret" *: *"\(whsec_[A-Za-z0-9_-]*\)".*/\1/p')
	[ -n "$secret" ] || fail "the secret route answered no whsec_ secret"
	umask 077
	printf '# written by deploy/demo.sh setup: integration id=webhook secret\n%s=%s\n' \
		"$DEMO_INTEGRATION_ID" "$secret" >"$SECRETS_FILE.tmp"
	mv "$SECRETS_FILE.tmp" "$SECRETS_FILE"
	say "webhook configured; its secret is in $SECRETS_FILE for the receiver"
}

# accepted prints how many distinct events the receiver has accepted.
accepted() {
	stats=$(curl --silent --show-error --fail --max-time 5 "$RECEIVER_URL/stats")
	n=$(printf '%s' "$stats" | sed -n 's/.*"accepted" *: *\([0-9][0-9]*\).*/\1/p')
	printf '%s\n' "${n:-0}"
}

publish() {
	: "${NATS_URL:?set NATS_URL, e.g. nats://nats:4222}"
	: "${RECEIVER_URL:?set RECEIVER_URL, e.g. http://receiver:9000}"
	timeout_seconds=${DEMO_TIMEOUT_SECONDS:-60}
	before=$(accepted)
	count=0
	for event in $EVENTS; do
		say "publishing $event"
		dispatcher publish -nats "$NATS_URL" -integration "$DEMO_INTEGRATION_ID" -event "$event" -sample
		count=$((count + 1))
	done
	say "published $count events; waiting for the receiver to verify and accept them"
	deadline=$(($(date +%s) + timeout_seconds))
	while :; do
		now=$(accepted)
		[ $((now - before)) -lt "$count" ] || break
		if [ "$(date +%s)" -ge "$deadline" ]; then
			printf 'demo: the receiver accepted %s of %s events within %s s. Its stats:\n' \
				"$((now - before))" "$count" "$timeout_seconds" >&2
			curl --silent --max-time 5 "$RECEIVER_URL/stats" >&2 || true
			cat >&2 <<-EOF

				demo: rejected_by.invalid_signature or unknown_integration means the receiver
				      holds an older secret; refresh it with
				        docker compose run --rm webhook-setup && docker compose restart receiver
				      Otherwise look at: docker compose logs dispatcher-1 dispatcher-2
			EOF
			exit 1
		fi
		sleep 1
	done
	say "the receiver accepted all $count events. Its stats ($RECEIVER_URL/stats):"
	curl --silent --show-error --fail --max-time 5 "$RECEIVER_URL/stats"
	say "the latest deliveries (GET /v1/integrations/$DEMO_INTEGRATION_ID/deliveries):"
	api GET "/v1/integrations/$DEMO_INTEGRATION_ID/deliveries?limit=$count"
	echo
	say "traces: http://localhost:16686/search?service=blazelock-dispatcher"
	say "receiver stats from the host: http://localhost:9000/stats"
}

case "${1:-}" in
setup) setup ;;
publish) publish ;;
*) fail "usage: demo.sh setup|publish" ;;
esac
