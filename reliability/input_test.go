package reliability

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/blazelock/webhooks/dispatcher/deliverylog"
	"github.com/blazelock/webhooks/internal/natsinfra"
	"github.com/blazelock/webhooks/internal/testinfra"
	"github.com/blazelock/webhooks/publisher"
	"github.com/blazelock/webhooks/schemas"
	"github.com/blazelock/webhooks/subscriber/receiver"
)

// TestBadInputOnTheBus publishes, next to valid events, everything a
// broken or hostile publisher can put on the events stream: malformed
// JSON, schema-invalid envelopes, subject/body mismatches, oversized
// events, unknown event types, missing or non-UUID event ids, subjects of
// the wrong shape, a message above the NATS payload limit, the same event
// id again (at once, with another body, and after delivery, all inside
// the duplicate window), an event for an integration without a webhook,
// and garbage on the retry lane. Every valid event must be delivered
// exactly once with its first body; every invalid one must end rejected
// with its reason (or skipped), reach no endpoint, and never be
// redelivered; nothing may stay pending on either consumer.
func TestBadInputOnTheBus(t *testing.T) {
	t.Parallel()
	const maxEventBytes = 4096
	c := newCluster(t, map[string]string{"DISPATCHER_MAX_EVENT_BYTES": fmt.Sprint(maxEventBytes)})
	a := c.startDispatcher("a", nil)
	ep := newEndpoint(t, receiver.Faults{})
	integration := c.configure(a, ep)
	unconfigured := uuid.Must(uuid.NewV7()).String() // no webhook
	other := uuid.Must(uuid.NewV7()).String()        // named by a subject that disagrees with its body
	ctx := context.Background()

	want := map[string]outcome{}
	by := map[string][]string{integration: nil, unconfigured: nil, other: nil}
	raw := func(subject, msgID string, body []byte) (*jetstream.PubAck, error) {
		msg := &nats.Msg{Subject: subject, Data: body, Header: nats.Header{}}
		if msgID != "" {
			msg.Header.Set(jetstream.MsgIDHeader, msgID)
		}
		return c.js.PublishMsg(ctx, msg)
	}
	envelope := func(integrationID, event string) []byte {
		at := schemas.At(time.Now())
		body, _, err := publisher.New(c.js).Build(publisher.Event{Name: event, IntegrationID: integrationID, OccurredAt: at, Data: publisher.SampleScan(event, at)})
		if err != nil {
			t.Fatal(err)
		}
		return body
	}
	subject := func(id, event string) string { return natsinfra.EventSubject(id, event) }

	// Valid events, each published twice at once with the same id: the
	// second copy (even with another body) is dropped by JetStream.
	type valid struct {
		ev   sentEvent
		body []byte
	}
	var valids []valid
	for i := range 5 {
		name := schemas.EventNames[i%3]
		id := uuid.Must(uuid.NewV7()).String()
		body := envelope(integration, name)
		for copyN, b := range [][]byte{body, body, envelope(integration, name)} {
			ack, err := raw(subject(integration, name), id, b)
			if err != nil {
				t.Fatal(err)
			}
			if ack.Duplicate != (copyN > 0) {
				t.Fatalf("publish %d of event %s: duplicate=%v", copyN+1, id, ack.Duplicate)
			}
		}
		valids = append(valids, valid{sentEvent{ID: id, Integration: integration, Event: name}, body})
		want[id] = succeeded
	}

	good := envelope(integration, schemas.EventCompleted)
	var padded map[string]any
	_ = json.Unmarshal(good, &padded)
	padded["data"].(map[string]any)["padding"] = strings.Repeat("x", maxEventBytes)
	oversized, _ := json.Marshal(padded)
	withExtraKey := strings.Replace(string(good), `{"event"`, `{"extra":1,"event"`, 1)
	unknown := strings.Replace(string(good), schemas.EventCompleted, "file_scan.deleted", 1)
	invalid := []struct {
		name, subject, msgID, body string
		filedUnder, reason         string
	}{
		{"malformed JSON", subject(integration, schemas.EventCompleted), "", `{"event":`, integration, "malformed JSON"},
		{"not JSON at all", subject(integration, schemas.EventCompleted), "", "\xff\xfe binary", integration, ""},
		{"empty body", subject(integration, schemas.EventCompleted), "", "", integration, ""},
		{"schema invalid", subject(integration, schemas.EventCompleted), "", `{"event":"file_scan.completed"}`, integration, "integration_id"},
		{"extra envelope key", subject(integration, schemas.EventCompleted), "", withExtraKey, integration, "extra"},
		{"event mismatch", subject(integration, schemas.EventFailed), "", string(good), integration, "subject says file_scan.failed"},
		{"integration mismatch", subject(other, schemas.EventCompleted), "", string(good), other, "subject says"},
		{"oversized", subject(integration, schemas.EventCompleted), "", string(oversized), integration, fmt.Sprintf("the limit is %d", maxEventBytes)},
		{"unknown event type", subject(integration, "file_scan.deleted"), "", unknown, integration, "unknown event type"},
		{"extra subject token", subject(integration, schemas.EventCompleted) + ".x", "", string(good), integration, "unknown event type"},
		{"missing event id", subject(integration, schemas.EventCompleted), "-", string(good), integration, "missing Nats-Msg-Id"},
		{"event id not a UUID", subject(integration, schemas.EventCompleted), "42", string(good), integration, "not a UUID"},
	}
	for _, tc := range invalid {
		msgID := tc.msgID
		switch msgID {
		case "":
			msgID = uuid.Must(uuid.NewV7()).String()
		case "-":
			msgID = ""
		}
		if _, err := raw(tc.subject, msgID, []byte(tc.body)); err != nil {
			t.Fatalf("%s: publish: %v", tc.name, err)
		}
		want[msgID] = outcome{State: deliverylog.StateRejected, Reason: tc.reason}
	}
	// Subjects whose integration part is not an id the API can list: they
	// must still be consumed and never redelivered (checked below).
	for _, s := range []string{"blazelock.events." + integration, "blazelock.events.not-an-id.file_scan.completed"} {
		if _, err := raw(s, uuid.Must(uuid.NewV7()).String(), good); err != nil {
			t.Fatal(err)
		}
	}
	// Larger than the server's max_payload (1 MiB): refused at publish,
	// never stored, never "accepted".
	if _, err := raw(subject(integration, schemas.EventCompleted), uuid.NewString(), make([]byte, 2<<20)); err == nil {
		t.Errorf("a 2 MiB message was accepted by JetStream")
	}
	// A valid event for an integration without a webhook.
	skipped := c.publish(unconfigured, schemas.EventSubmitted)
	want[skipped.ID] = outcome{State: deliverylog.StateSkipped, Reason: "no webhook configured"}
	// Garbage on the retry lane (only dispatchers should write there; see
	// docs/reliability.md): dropped, never looping.
	if _, err := c.js.PublishMsg(ctx, &nats.Msg{Subject: natsinfra.RetriesDuePrefix + integration, Data: good, Header: nats.Header{"Blazelock-Attempt": {"x"}}}); err != nil {
		t.Fatal(err)
	}

	c.awaitOutcomes(a, want, by, time.Minute)
	var delivered []sentEvent
	arrivals := ep.arrivals()
	for _, v := range valids {
		delivered = append(delivered, v.ev)
		if arr := arrivals[v.ev.ID]; len(arr) != 1 || string(arr[0].Body) != string(v.body) {
			t.Errorf("event %s: %d requests, or not the first body published under its id", v.ev.ID, len(arr))
		}
		// Again after delivery, inside the duplicate window: dropped.
		ack, err := raw(subject(integration, v.ev.Event), v.ev.ID, v.body)
		if err != nil || !ack.Duplicate {
			t.Errorf("re-publish of delivered event %s: duplicate=%v err=%v", v.ev.ID, ack != nil && ack.Duplicate, err)
		}
	}
	testinfra.WaitFor(t, 10*time.Second, "the dispatcher to drop the retry-lane garbage", func() bool {
		return strings.Contains(a.Log.String(), "undecodable retry message dropped")
	})
	for _, lane := range []struct{ stream, consumer string }{
		{natsinfra.EventsStream, natsinfra.EventsConsumer}, {natsinfra.RetriesStream, natsinfra.RetriesConsumer},
	} {
		var info *jetstream.ConsumerInfo
		testinfra.WaitFor(t, 10*time.Second, "consumer "+lane.consumer+" to have nothing left", func() bool {
			cons, err := c.js.Consumer(ctx, lane.stream, lane.consumer)
			if err == nil {
				info, err = cons.Info(ctx)
			}
			return err == nil && info.NumPending == 0 && info.NumAckPending == 0
		})
		if info.NumRedelivered != 0 || info.Delivered.Consumer != info.AckFloor.Consumer {
			t.Errorf("consumer %s: %d redelivered, delivered %d vs ack floor %d: a bad message was offered again",
				lane.consumer, info.NumRedelivered, info.Delivered.Consumer, info.AckFloor.Consumer)
		}
	}
	stream, err := c.js.Stream(ctx, natsinfra.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Stored: the valid events once each, every invalid one, the two odd
	// subjects and the skipped event; no duplicate and not the 2 MiB one.
	if wantMsgs := uint64(len(valids) + len(invalid) + 2 + 1); info.State.Msgs != wantMsgs {
		t.Errorf("events stream holds %d messages, want %d", info.State.Msgs, wantMsgs)
	}
	if dups := checkArrivals(t, ep, delivered); dups != 0 {
		t.Errorf("%d duplicates, want none", dups)
	}
	if n := len(ep.Deliveries()); n != len(valids) {
		t.Errorf("endpoint received %d requests, want only the %d valid events", n, len(valids))
	}
}

// TestBadInputOnTheAPI sends the management API of a running dispatcher
// what a careless or hostile caller would: no token, a wrong token, the
// token in the wrong place or scheme, malformed, invalid, oversized and
// mistyped bodies, bad ids, cursors and limits, unknown routes and
// methods. Each must get its documented status and a JSON error body
// ({"code", "message"}, "validation" only on 422), change nothing, and
// never echo the token.
func TestBadInputOnTheAPI(t *testing.T) {
	t.Parallel()
	c := newCluster(t, nil)
	a := c.startDispatcher("a", nil)
	ep := newEndpoint(t, receiver.Faults{})
	id := c.configure(a, ep)
	hook := "/v1/integrations/" + id + "/webhook"
	auth := http.Header{"Authorization": {"Bearer " + c.adminToken}}
	jsonAuth := http.Header{"Authorization": {"Bearer " + c.adminToken}, "Content-Type": {"application/json"}}
	with := func(h http.Header, k, v string) http.Header {
		out := h.Clone()
		out.Set(k, v)
		return out
	}
	validBody := `{"enabled": true, "url": "` + ep.base() + `/webhooks/changed", "events": ["file_scan.completed"]}`
	cases := []struct {
		name, method, path string
		header             http.Header
		body               string
		status             int
		code               string
		field              string // for 422: a field that must have a message
	}{
		{"no token", "GET", hook, nil, "", 401, "unauthorized", ""},
		{"no token on a write", "PUT", hook, http.Header{"Content-Type": {"application/json"}}, validBody, 401, "unauthorized", ""},
		{"wrong token", "GET", hook, http.Header{"Authorization": {"Bearer " + c.adminToken + "x"}}, "", 401, "unauthorized", ""},
		{"token prefix", "GET", hook, http.Header{"Authorization": {"Bearer " + c.adminToken[:20]}}, "", 401, "unauthorized", ""},
		{"basic scheme", "GET", hook, http.Header{"Authorization": {"Basic " + c.adminToken}}, "", 401, "unauthorized", ""},
		{"token without scheme", "GET", hook, http.Header{"Authorization": {c.adminToken}}, "", 401, "unauthorized", ""},
		{"token in the query", "GET", hook + "?access_token=" + c.adminToken, nil, "", 401, "unauthorized", ""},
		{"two authorization headers", "GET", hook, http.Header{"Authorization": {"Bearer " + c.adminToken, "Bearer " + c.adminToken}}, "", 401, "unauthorized", ""},
		{"rotate without token", "POST", hook + "/secret/rotate", nil, "", 401, "unauthorized", ""},
		{"secret without token", "GET", hook + "/secret", nil, "", 401, "unauthorized", ""},
		{"malformed JSON", "PUT", hook, jsonAuth, `{"enabled": true,`, 422, "validation_failed", "body"},
		{"not an object", "PUT", hook, jsonAuth, `[1,2]`, 422, "validation_failed", "body"},
		{"trailing data", "PUT", hook, jsonAuth, validBody + `{}`, 422, "validation_failed", "body"},
		{"wrong types", "PUT", hook, jsonAuth, `{"enabled": "yes", "url": 7, "events": "all"}`, 422, "validation_failed", "enabled"},
		{"unknown field", "PUT", hook, jsonAuth, `{"enabled": true, "url": "https://example.com/", "events": ["file_scan.completed"], "secret": "whsec_mine"}`, 422, "validation_failed", "secret"},
		{"unknown event", "PUT", hook, jsonAuth, `{"enabled": true, "url": "https://example.com/", "events": ["file_scan.deleted"]}`, 422, "validation_failed", "events"},
		{"no events while enabled", "PUT", hook, jsonAuth, `{"enabled": true, "url": "https://example.com/", "events": []}`, 422, "validation_failed", "events"},
		{"oversized body", "PUT", hook, jsonAuth, `{"enabled": true, "url": "https://example.com/` + strings.Repeat("a", 100<<10) + `", "events": ["file_scan.completed"]}`, 413, "body_too_large", ""},
		{"not JSON content type", "PUT", hook, with(auth, "Content-Type", "text/plain"), validBody, 415, "unsupported_media_type", ""},
		{"bad integration id", "PUT", "/v1/integrations/not-a-uuid/webhook", jsonAuth, validBody, 400, "invalid_integration_id", ""},
		{"id with a path trick", "GET", "/v1/integrations/..%2f..%2fadmin/webhook", auth, "", 400, "invalid_integration_id", ""},
		{"unknown integration", "GET", "/v1/integrations/" + uuid.NewString() + "/webhook", auth, "", 404, "not_found", ""},
		{"unknown delivery", "GET", "/v1/deliveries/" + uuid.NewString(), auth, "", 404, "not_found", ""},
		{"retry unknown delivery", "POST", "/v1/deliveries/" + uuid.NewString() + "/retry", auth, "", 404, "not_found", ""},
		{"bad limit", "GET", "/v1/integrations/" + id + "/deliveries?limit=100000", auth, "", 422, "validation_failed", "limit"},
		{"bad cursor", "GET", "/v1/integrations/" + id + "/deliveries?cursor=not-a-cursor", auth, "", 422, "validation_failed", "cursor"},
		{"bad state", "GET", "/v1/integrations/" + id + "/deliveries?state=lost", auth, "", 422, "validation_failed", "state"},
		{"wrong method", "PATCH", hook, jsonAuth, validBody, 405, "method_not_allowed", ""},
		{"unknown route", "GET", "/v1/admin", auth, "", 404, "not_found", ""},
	}
	for _, tc := range cases {
		status, header, body := a.request(tc.method, tc.path, []byte(tc.body), tc.header)
		var e struct {
			Code       string              `json:"code"`
			Message    string              `json:"message"`
			Validation map[string][]string `json:"validation"`
		}
		err := json.Unmarshal(body, &e)
		switch {
		case status != tc.status || err != nil || e.Code != tc.code || e.Message == "":
			t.Errorf("%s: %d %q, want %d with code %s", tc.name, status, body, tc.status, tc.code)
		case !strings.HasPrefix(header.Get("Content-Type"), "application/json"):
			t.Errorf("%s: Content-Type %q", tc.name, header.Get("Content-Type"))
		case (status == 422) != (e.Validation != nil):
			t.Errorf("%s: validation %v on a %d answer", tc.name, e.Validation, status)
		case tc.field != "" && len(e.Validation[tc.field]) == 0:
			t.Errorf("%s: no validation message for %q: %v", tc.name, tc.field, e.Validation)
		case status == 401 && !strings.HasPrefix(header.Get("WWW-Authenticate"), "Bearer"):
			t.Errorf("%s: 401 without a Bearer challenge", tc.name)
		case strings.Contains(string(body), c.adminToken[:20]):
			t.Errorf("%s: the answer echoes the admin token", tc.name)
		}
	}
	// Nothing changed: the webhook is as configured, with the same secret.
	var got struct {
		URL    string   `json:"url"`
		Events []string `json:"events"`
	}
	if code := a.api("GET", hook, nil, &got); code != 200 || got.URL != ep.base()+"/webhooks/"+id || len(got.Events) != 3 {
		t.Errorf("the webhook changed after bad requests: %d %+v", code, got)
	}
	// Health and metrics need no token; they must not become a way around it.
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if status, _, _ := a.request("GET", p, nil, nil); status != 200 {
			t.Errorf("GET %s without a token: %d, want 200", p, status)
		}
	}
	if status, _, _ := a.request("GET", "/metrics/../v1/integrations/"+id+"/webhook/secret", nil, nil); status == 200 {
		t.Errorf("a path through /metrics reached the secret without a token")
	}
	// A delivery still works end to end after all that.
	c.publish(id, schemas.EventCompleted)
	testinfra.WaitFor(t, 20*time.Second, "a delivery after the bad requests", func() bool { return ep.Stats().Accepted == 1 })
}
