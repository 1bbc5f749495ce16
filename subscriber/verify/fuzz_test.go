package verify_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/blazelock/webhooks/subscriber/verify"
)

// FuzzVerify checks, for arbitrary secrets, timestamps, bodies and claimed
// signatures:
//   - nothing panics;
//   - a claimed signature is accepted only if it is the correct MAC (in any
//     hex case) and the timestamp is within tolerance;
//   - the correct signature of a well-formed timestamp always verifies at that
//     time (and its uppercase form too), unless the secret is empty;
//   - changing any single byte of the body never verifies;
//   - Authenticate never panics on the body, and a verified event carries the
//     body unchanged.
func FuzzVerify(f *testing.F) {
	f.Add(vectorSecret, vectorTimestamp, []byte(vectorBody), vectorSignature, uint(0), byte(1))
	f.Add(vectorSecret, vectorTimestamp, []byte(vectorBody), strings.ToUpper(vectorSignature), uint(17), byte(0x80))
	f.Add(vectorSecret, "1773059697", []byte(vectorBody), vectorSignature, uint(400), byte(0xff))
	f.Add("whsec_x", "0", []byte{}, "", uint(0), byte(0))
	f.Add("", "12", []byte("{}"), strings.Repeat("0", 64), uint(1), byte(2))
	f.Add("whsec_ü", "-1", []byte("\x00\xff"), "zz", uint(5), byte(3))
	f.Add("whsec_k", "99999999999999999999", []byte(`{"integration_id":null}`), "sha256="+vectorSignature, uint(9), byte(4))
	f.Add("whsec_k", "1773059696", []byte(`{"event":"e","integration_id":"i","occurred_at":"2026-03-09T12:34:56.000Z","data":{}}`), "", uint(3), byte(' '))

	f.Fuzz(func(t *testing.T, secret, timestamp string, body []byte, claimed string, pos uint, delta byte) {
		now := vectorTime
		v := verify.Verifier{Now: func() time.Time { return now }}

		// Arbitrary claimed signature: accepted only if it is right.
		if err := v.VerifySignature(secret, timestamp, claimed, body); err == nil {
			sentAt, perr := verify.ParseTimestamp(timestamp)
			if perr != nil || secret == "" || !strings.EqualFold(claimed, verify.Sign(secret, timestamp, body)) {
				t.Fatalf("accepted a wrong signature %q (secret %q, timestamp %q)", claimed, secret, timestamp)
			}
			if d := now.Sub(sentAt); d > verify.DefaultTolerance || d < -verify.DefaultTolerance {
				t.Fatalf("accepted a timestamp %s away", d)
			}
		}

		// The correct signature verifies at its own time.
		ts := timestamp
		sentAt, err := verify.ParseTimestamp(ts)
		if err != nil {
			ts, sentAt = vectorTimestamp, vectorTime
		}
		now = sentAt
		good := verify.Sign(secret, ts, body)
		err = v.VerifySignature(secret, ts, good, body)
		if secret == "" {
			if !errors.Is(err, verify.ErrNoSecret) {
				t.Fatalf("empty secret: got %v", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("correct signature refused: %v", err)
		}
		if err := v.VerifySignature(secret, ts, strings.ToUpper(good), body); err != nil {
			t.Fatalf("uppercase correct signature refused: %v", err)
		}

		// Any single-byte change to the body breaks it.
		if len(body) > 0 {
			if delta == 0 {
				delta = 1
			}
			changed := bytes.Clone(body)
			changed[pos%uint(len(changed))] ^= delta
			if err := v.VerifySignature(secret, ts, good, changed); !errors.Is(err, verify.ErrBadSignature) {
				t.Fatalf("body changed at %d still gives %v", pos%uint(len(changed)), err)
			}
		}

		// The whole-request path on arbitrary bodies.
		auth := verify.Authenticator{Secrets: verify.FixedSecret(secret), Verifier: v}
		ev, err := auth.Authenticate(context.Background(), header(ts, good), body)
		if err == nil && !bytes.Equal(ev.Body, body) {
			t.Fatal("verified event body differs from the request body")
		}
		if err != nil && !errors.Is(err, verify.ErrMalformedEnvelope) {
			t.Fatalf("correctly signed body refused with %v", err)
		}
	})
}
