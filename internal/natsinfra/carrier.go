package natsinfra

import "github.com/nats-io/nats.go"

// HeaderCarrier adapts nats.Header to OpenTelemetry's TextMapCarrier.
//
// nats.Header is case-sensitive, unlike http.Header, so propagation's
// HeaderCarrier (which canonicalises to "Traceparent") would miss the
// lowercase "traceparent" written by other NATS clients. This type keeps
// keys exactly as given on both sides.
type HeaderCarrier nats.Header

// Get returns the first value of key.
func (c HeaderCarrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Set replaces the values of key.
func (c HeaderCarrier) Set(key, value string) { c[key] = []string{value} }

// Keys lists the header names.
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
