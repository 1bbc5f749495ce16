package webhooks

import (
	"fmt"
	"time"

	"github.com/blazelock/webhooks/schemas"
)

// Settings are what the management API sets on an integration's webhook
// (docs/contract.md, Webhook configuration).
type Settings struct {
	Enabled bool
	URL     string
	// Events is a subset of schemas.EventNames. The store keeps it without
	// duplicates, in the canonical order of schemas.EventNames; it must not be
	// empty while Enabled.
	Events []string
}

// Webhook is an integration's webhook configuration as readers get it.
type Webhook struct {
	IntegrationID string
	Settings
	// Secret is the plaintext webhook secret ("whsec_…"). It exists in
	// memory only: KV and Redis hold it encrypted.
	Secret string
	// Revision is the JetStream KV revision of this configuration; every
	// write gives a larger one.
	Revision  uint64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Selects reports whether event is one of the configured events. It does
// not look at Enabled: a disabled webhook skips every event whatever it
// selects, and callers usually want to tell those two reasons apart.
func (c Webhook) Selects(event string) bool {
	for _, e := range c.Events {
		if e == event {
			return true
		}
	}
	return false
}

// normalizeSettings checks s and returns it with Events deduplicated and in
// canonical order. The API gives callers precise per-field messages; this
// check keeps other callers of the store from storing what the contract
// forbids.
func normalizeSettings(s Settings) (Settings, error) {
	mask, err := eventMask(s.Events)
	if err != nil {
		return Settings{}, err
	}
	if s.Enabled && mask == 0 {
		return Settings{}, fmt.Errorf("%w: events must not be empty while the webhook is enabled", ErrInvalidSettings)
	}
	if s.URL == "" {
		return Settings{}, fmt.Errorf("%w: url is required", ErrInvalidSettings)
	}
	s.Events = eventsFromMask(mask)
	return s, nil
}

// eventMask encodes a set of event names as bits in canonical order; the cache
// stores the mask instead of the names.
func eventMask(events []string) (uint8, error) {
	var mask uint8
	for _, e := range events {
		bit := eventBit(e)
		if bit == 0 {
			return 0, fmt.Errorf("%w: unknown event %q", ErrInvalidSettings, e)
		}
		mask |= bit
	}
	return mask, nil
}

func eventBit(event string) uint8 {
	for i, name := range schemas.EventNames {
		if name == event {
			return 1 << i
		}
	}
	return 0
}

// eventsFromMask returns the names in mask, in canonical order. It always returns
// a fresh slice (never shared), so callers may modify it.
func eventsFromMask(mask uint8) []string {
	events := make([]string, 0, len(schemas.EventNames))
	for i, name := range schemas.EventNames {
		if mask&(1<<i) != 0 {
			events = append(events, name)
		}
	}
	return events
}
