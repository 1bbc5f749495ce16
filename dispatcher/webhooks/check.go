package webhooks

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/blazelock/webhooks/dispatcher/target"
	"github.com/blazelock/webhooks/schemas"
)

// The checks below are the one source of the URL and event rules for every
// surface that edits settings (the JSON API and the Webhook section pages),
// so both give the same reasons. Each message completes a sentence whose
// subject is the field ("url has a host that does not exist").

// urlCheckTimeout bounds the DNS lookup of a webhook URL's host.
const urlCheckTimeout = 5 * time.Second

// KnownEvents lists the event names for messages.
var KnownEvents = strings.Join(schemas.EventNames, ", ")

// CheckURL returns why raw is refused as a webhook URL, or "" when policy
// accepts it. The delivery transport checks the addresses again at connect
// time; this check answers the user at once.
func CheckURL(ctx context.Context, raw string, policy target.Policy, r target.Resolver) string {
	if raw == "" {
		return "must not be empty"
	}
	ctx, cancel := context.WithTimeout(ctx, urlCheckTimeout)
	defer cancel()
	err := policy.CheckURL(ctx, raw, r)
	if err == nil {
		return ""
	}
	if ue, ok := errors.AsType[*target.URLError](err); ok {
		return ue.Reason
	}
	return "is not an acceptable webhook URL"
}

// CheckEventNames returns the known names of names, each once in the order
// given, and a message for every unknown or repeated one.
func CheckEventNames(names []string) (events []string, problems []string) {
	for i, name := range names {
		switch {
		case !schemas.IsEventName(name):
			problems = append(problems, fmt.Sprintf("%q is not an event; known events: %s", name, KnownEvents))
		case slices.Contains(names[:i], name):
			problems = append(problems, fmt.Sprintf("%q is listed more than once", name))
		default:
			events = append(events, name)
		}
	}
	return events, problems
}

// MaskSecret shows a secret as "whsec_…" and its last four characters, so
// a user can tell secrets apart without seeing one.
func MaskSecret(secret string) string {
	const prefix, shown = "whsec_", 4
	if len(secret) < len(prefix)+2*shown {
		return prefix + "…"
	}
	return prefix + "…" + secret[len(secret)-shown:]
}
