package verify_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/blazelock/webhooks/subscriber/verify"
)

// Verify a body you already read, at a fixed "now" so the example's output is
// stable (leave Now nil in real code).
func ExampleVerifier_Verify() {
	body := []byte(`{"event":"file_scan.submitted","integration_id":"0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c01","occurred_at":"2026-03-09T12:34:56.000Z","data":{"id":"019583d8-b2e4-7b8d-9d1f-6f4cb3d0b6f1","external_reference_id":"invoice-4711","status":"processing","execution_mode":"async","file_name":"invoice.pdf","file_size":245761,"submitted_at":"2026-03-09T12:34:56.000Z"}}`)
	header := http.Header{}
	header.Set("X-Blazelock-Webhook-Timestamp", "1773059696")
	header.Set("X-Blazelock-Webhook-Signature", "a36dc2e6d5b3e9362b5aed73a14d6590e2af2ea918393e315989752dc673f78c")

	v := verify.Verifier{Now: func() time.Time { return time.Unix(1773059696+42, 0) }}
	fmt.Println("genuine:", v.Verify("whsec_test_fixture_secret", header, body))

	tampered := []byte(strings.Replace(string(body), "245761", "1", 1))
	err := v.Verify("whsec_test_fixture_secret", header, tampered)
	fmt.Println("tampered:", err, errors.Is(err, verify.ErrBadSignature))

	late := verify.Verifier{Now: func() time.Time { return time.Unix(1773059696+3600, 0) }}
	err = late.Verify("whsec_test_fixture_secret", header, body)
	fmt.Println("an hour later:", errors.Is(err, verify.ErrTimestampTooOld))
	// Output:
	// genuine: <nil>
	// tampered: webhook signature mismatch true
	// an hour later: true
}

// Protect a handler: secrets are looked up by the body's integration_id, and
// the handler receives the verified event from the request context.
func ExampleAuthenticator_Middleware() {
	secrets := map[string]string{"0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c01": "whsec_test_fixture_secret"}
	auth := &verify.Authenticator{
		Secrets: verify.StaticSecrets(secrets),
		OnReject: func(r *http.Request, err error) {
			// The client only sees the class; log the detail.
			fmt.Println("refused:", verify.Reason(err), "-", err)
		},
	}
	handler := auth.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ev, _ := verify.EventFromContext(r.Context())
		fmt.Println(ev.Envelope.Event, ev.Envelope.IntegrationID, "attempt", ev.Attempt)
		w.WriteHeader(http.StatusNoContent)
	}))

	body := `{"event":"file_scan.submitted","integration_id":"0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c01","occurred_at":"2026-03-09T12:34:56.000Z","data":{}}`
	timestamp := fmt.Sprint(time.Now().Unix())
	req := httptest.NewRequest(http.MethodPost, "/webhooks/blazelock", strings.NewReader(body))
	req.Header.Set("X-Blazelock-Webhook-Timestamp", timestamp)
	req.Header.Set("X-Blazelock-Webhook-Signature", verify.Sign("whsec_test_fixture_secret", timestamp, []byte(body)))
	req.Header.Set("X-Blazelock-Webhook-Id", "01958a2b-0000-7000-8000-000000000001")
	req.Header.Set("X-Blazelock-Webhook-Attempt", "1")
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	fmt.Println(rec.Code)

	req = httptest.NewRequest(http.MethodPost, "/webhooks/blazelock", strings.NewReader(body))
	rec = httptest.NewRecorder()
	handler.ServeHTTP(rec, req) // no headers: refused before the handler runs
	fmt.Print(rec.Code, " ", rec.Body.String())
	// Output:
	// file_scan.submitted 0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c01 attempt 1
	// 204
	// refused: missing_header - missing webhook header: X-Blazelock-Webhook-Timestamp
	// 401 {"code":"missing_header","message":"missing header X-Blazelock-Webhook-Timestamp"}
}
