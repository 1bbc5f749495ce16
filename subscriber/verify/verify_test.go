package verify_test

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/blazelock/webhooks/subscriber/verify"
)

// The test vector of docs/contract.md, Signature.
const (
	vectorSecret    = "whsec_test_fixture_secret"
	vectorTimestamp = "1773059696"
	vectorBody      = `{"event":"file_scan.submitted","integration_id":"0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c01","occurred_at":"2026-03-09T12:34:56.000Z","data":{"id":"019583d8-b2e4-7b8d-9d1f-6f4cb3d0b6f1","external_reference_id":"invoice-4711","status":"processing","execution_mode":"async","file_name":"invoice.pdf","file_size":245761,"submitted_at":"2026-03-09T12:34:56.000Z"}}`
	vectorSignature = "a36dc2e6d5b3e9362b5aed73a14d6590e2af2ea918393e315989752dc673f78c"
	vectorIntegrate = "0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c01"
)

var vectorTime = time.Unix(1773059696, 0)

func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

func TestSignMatchesSpecVector(t *testing.T) {
	if got := verify.Sign(vectorSecret, vectorTimestamp, []byte(vectorBody)); got != vectorSignature {
		t.Fatalf("Sign(contract test vector) = %s, want %s", got, vectorSignature)
	}
}

func TestVerifySignature(t *testing.T) {
	tampered := strings.Replace(vectorBody, `"file_size":245761`, `"file_size":245762`, 1)
	tests := []struct {
		name      string
		secret    string
		timestamp string
		signature string
		body      string
		now       time.Time
		tolerance time.Duration
		want      error // nil: verifies
	}{
		{"spec vector", vectorSecret, vectorTimestamp, vectorSignature, vectorBody, vectorTime, 0, nil},
		{"uppercase hex is the same MAC", vectorSecret, vectorTimestamp, strings.ToUpper(vectorSignature), vectorBody, vectorTime, 0, nil},
		{"mixed-case hex", vectorSecret, vectorTimestamp, "A36DC2e6d5b3e9362b5aed73a14d6590e2af2ea918393e315989752dc673f78C", vectorBody, vectorTime, 0, nil},
		{"tampered body", vectorSecret, vectorTimestamp, vectorSignature, tampered, vectorTime, 0, verify.ErrBadSignature},
		{"body with trailing newline", vectorSecret, vectorTimestamp, vectorSignature, vectorBody + "\n", vectorTime, 0, verify.ErrBadSignature},
		{"wrong secret", "whsec_another_secret", vectorTimestamp, vectorSignature, vectorBody, vectorTime, 0, verify.ErrBadSignature},
		{"secret without its whsec_ prefix", "test_fixture_secret", vectorTimestamp, vectorSignature, vectorBody, vectorTime, 0, verify.ErrBadSignature},
		{"empty secret", "", vectorTimestamp, vectorSignature, vectorBody, vectorTime, 0, verify.ErrNoSecret},
		{"timestamp changed (signature covers it)", vectorSecret, "1773059697", vectorSignature, vectorBody, vectorTime, 0, verify.ErrBadSignature},
		{"signature one hex digit short", vectorSecret, vectorTimestamp, vectorSignature[:63], vectorBody, vectorTime, 0, verify.ErrBadSignature},
		{"signature not hex", vectorSecret, vectorTimestamp, "z" + vectorSignature[1:], vectorBody, vectorTime, 0, verify.ErrBadSignature},
		{"signature with prefix", vectorSecret, vectorTimestamp, "sha256=" + vectorSignature, vectorBody, vectorTime, 0, verify.ErrBadSignature},
		{"last bit flipped", vectorSecret, vectorTimestamp, vectorSignature[:63] + "d", vectorBody, vectorTime, 0, verify.ErrBadSignature},
		{"5 minutes old: boundary accepted", vectorSecret, vectorTimestamp, vectorSignature, vectorBody, vectorTime.Add(5 * time.Minute), 0, nil},
		{"5 minutes and 1 second old", vectorSecret, vectorTimestamp, vectorSignature, vectorBody, vectorTime.Add(5*time.Minute + time.Second), 0, verify.ErrTimestampTooOld},
		{"an hour old", vectorSecret, vectorTimestamp, vectorSignature, vectorBody, vectorTime.Add(time.Hour), 0, verify.ErrTimestampTooOld},
		{"5 minutes ahead: boundary accepted", vectorSecret, vectorTimestamp, vectorSignature, vectorBody, vectorTime.Add(-5 * time.Minute), 0, nil},
		{"5 minutes and 1 second ahead", vectorSecret, vectorTimestamp, vectorSignature, vectorBody, vectorTime.Add(-5*time.Minute - time.Second), 0, verify.ErrTimestampInFuture},
		{"sub-second clock at the boundary", vectorSecret, vectorTimestamp, vectorSignature, vectorBody, vectorTime.Add(5*time.Minute + 999*time.Millisecond), 0, nil},
		{"custom tolerance: 30s old refused", vectorSecret, vectorTimestamp, vectorSignature, vectorBody, vectorTime.Add(31 * time.Second), 30 * time.Second, verify.ErrTimestampTooOld},
		{"custom tolerance: 1h old accepted", vectorSecret, vectorTimestamp, vectorSignature, vectorBody, vectorTime.Add(time.Hour), 2 * time.Hour, nil},
		{"stale and wrong signature: stale wins (checked first)", "whsec_other", vectorTimestamp, vectorSignature, vectorBody, vectorTime.Add(time.Hour), 0, verify.ErrTimestampTooOld},
		{"missing timestamp", vectorSecret, "", vectorSignature, vectorBody, vectorTime, 0, verify.ErrMissingHeader},
		{"missing signature", vectorSecret, vectorTimestamp, "", vectorBody, vectorTime, 0, verify.ErrMissingHeader},
		{"timestamp in milliseconds is far in the future", vectorSecret, "1773059696000", vectorSignature, vectorBody, vectorTime, 0, verify.ErrMalformedTimestamp},
		{"negative timestamp", vectorSecret, "-1773059696", vectorSignature, vectorBody, vectorTime, 0, verify.ErrMalformedTimestamp},
		{"plus sign", vectorSecret, "+1773059696", vectorSignature, vectorBody, vectorTime, 0, verify.ErrMalformedTimestamp},
		{"fractional seconds", vectorSecret, "1773059696.5", vectorSignature, vectorBody, vectorTime, 0, verify.ErrMalformedTimestamp},
		{"RFC 3339 timestamp", vectorSecret, "2026-03-09T12:34:56Z", vectorSignature, vectorBody, vectorTime, 0, verify.ErrMalformedTimestamp},
		{"spaces", vectorSecret, " 1773059696", vectorSignature, vectorBody, vectorTime, 0, verify.ErrMalformedTimestamp},
		{"unicode digits", vectorSecret, "١٧٧٣٠٥٩٦٩٦", vectorSignature, vectorBody, vectorTime, 0, verify.ErrMalformedTimestamp},
		{"overflowing digits", vectorSecret, "99999999999999999999999", vectorSignature, vectorBody, vectorTime, 0, verify.ErrMalformedTimestamp},
		{"far-future 12-digit timestamp", vectorSecret, "999999999999", vectorSignature, vectorBody, vectorTime, 0, verify.ErrTimestampInFuture},
		{"epoch", vectorSecret, "0", vectorSignature, vectorBody, vectorTime, 0, verify.ErrTimestampTooOld},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := verify.Verifier{Tolerance: tt.tolerance, Now: fixedClock(tt.now)}
			err := v.VerifySignature(tt.secret, tt.timestamp, tt.signature, []byte(tt.body))
			if tt.want == nil {
				if err != nil {
					t.Fatalf("want verified, got %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("want %v, got %v", tt.want, err)
			}
			// Each failure matches exactly one class, so callers can switch on it.
			for _, other := range []error{verify.ErrMissingHeader, verify.ErrMalformedTimestamp, verify.ErrTimestampTooOld,
				verify.ErrTimestampInFuture, verify.ErrBadSignature, verify.ErrNoSecret} {
				if other != tt.want && errors.Is(err, other) {
					t.Errorf("error %v also matches %v", err, other)
				}
			}
		})
	}
}

func TestMissingHeaderNamesTheHeader(t *testing.T) {
	v := verify.Verifier{Now: fixedClock(vectorTime)}
	for header, h := range map[string]http.Header{
		verify.HeaderTimestamp: {"X-Blazelock-Webhook-Signature": {vectorSignature}},
		verify.HeaderSignature: {"X-Blazelock-Webhook-Timestamp": {vectorTimestamp}},
	} {
		err := v.Verify(vectorSecret, h, []byte(vectorBody))
		var missing *verify.MissingHeaderError
		if !errors.As(err, &missing) || missing.Header != header {
			t.Errorf("without %s: got %v, want a *MissingHeaderError naming it", header, err)
		}
		if !strings.Contains(err.Error(), header) {
			t.Errorf("message %q does not name %s", err, header)
		}
	}
}

func TestStaleAndFutureMessagesDiffer(t *testing.T) {
	stale := (&verify.Verifier{Now: fixedClock(vectorTime.Add(time.Hour))}).VerifySignature(vectorSecret, vectorTimestamp, vectorSignature, []byte(vectorBody))
	future := (&verify.Verifier{Now: fixedClock(vectorTime.Add(-time.Hour))}).VerifySignature(vectorSecret, vectorTimestamp, vectorSignature, []byte(vectorBody))
	if !strings.Contains(stale.Error(), "too old") || !strings.Contains(stale.Error(), "3600s ago") {
		t.Errorf("stale message: %q", stale)
	}
	if !strings.Contains(future.Error(), "future") || !strings.Contains(future.Error(), "3600s ahead") {
		t.Errorf("future message: %q", future)
	}
}

func TestVerifyReadsHeadersCaseInsensitively(t *testing.T) {
	h := http.Header{}
	h.Set("x-blazelock-webhook-timestamp", vectorTimestamp) // Set canonicalises
	h.Set("x-blazelock-webhook-signature", vectorSignature)
	v := verify.Verifier{Now: fixedClock(vectorTime)}
	if err := v.Verify(vectorSecret, h, []byte(vectorBody)); err != nil {
		t.Fatal(err)
	}
}

func TestDefaultVerifierUsesTheRealClock(t *testing.T) {
	// The test vector's timestamp is fixed, so against the real clock it is
	// either too old or in the future; a fresh signature verifies.
	err := verify.Verify(vectorSecret, header(vectorTimestamp, vectorSignature), []byte(vectorBody))
	if !errors.Is(err, verify.ErrTimestampTooOld) && !errors.Is(err, verify.ErrTimestampInFuture) {
		t.Fatalf("contract test vector against the real clock: %v", err)
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	if err := verify.Verify(vectorSecret, header(ts, verify.Sign(vectorSecret, ts, []byte(vectorBody))), []byte(vectorBody)); err != nil {
		t.Fatalf("fresh signature: %v", err)
	}
}

func header(timestamp, signature string) http.Header {
	h := http.Header{}
	if timestamp != "" {
		h.Set(verify.HeaderTimestamp, timestamp)
	}
	if signature != "" {
		h.Set(verify.HeaderSignature, signature)
	}
	return h
}

func BenchmarkVerify(b *testing.B) {
	v := verify.Verifier{Now: fixedClock(vectorTime)}
	body := []byte(vectorBody)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if err := v.VerifySignature(vectorSecret, vectorTimestamp, vectorSignature, body); err != nil {
			b.Fatal(err)
		}
	}
}
