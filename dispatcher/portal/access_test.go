package portal

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestAccessLinkOpensOneSessionOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	id := newID()

	token, expires, err := e.access.NewLink(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	e.remember(token)
	if !wellFormed(token) || len(token) != 43 {
		t.Fatalf("token %q is not 256 bits in base64url", token)
	}
	if want := e.clock.Now().Add(linkTTL); !expires.Equal(want.UTC()) {
		t.Errorf("link expires %s, want %s", expires, want)
	}

	cookie, sess, err := e.access.Redeem(ctx, token)
	if err != nil {
		t.Fatalf("first redeem: %v", err)
	}
	e.remember(cookie)
	if cookie == token || !wellFormed(cookie) {
		t.Fatalf("cookie %q: want a fresh 256-bit token", cookie)
	}
	if sess.IntegrationID != id || sess.Operator() || !sess.Allows(id) || sess.Allows(newID()) {
		t.Errorf("session %+v: want one limited to %s", sess, id)
	}
	if want := e.clock.Now().Add(sessionTTL).UTC(); !sess.ExpiresAt.Equal(want) {
		t.Errorf("session expires %s, want %s", sess.ExpiresAt, want)
	}
	got, err := e.access.Session(ctx, cookie)
	if err != nil || got.IntegrationID != id || got.Ref != sess.Ref || got.Ref == "" {
		t.Fatalf("Session(cookie) = %+v, %v; want the redeemed session", got, err)
	}

	for range 2 {
		if _, _, err := e.access.Redeem(ctx, token); !errors.Is(err, ErrLinkUsed) {
			t.Fatalf("redeem again: %v, want ErrLinkUsed", err)
		}
	}
	// A used link stays used after it would have expired too.
	e.clock.Advance(linkTTL + time.Second)
	if _, _, err := e.access.Redeem(ctx, token); !errors.Is(err, ErrLinkUsed) {
		t.Fatalf("redeem a used, expired link: %v, want ErrLinkUsed", err)
	}
}

func TestAccessOperatorLinkOpensOperatorSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cookie, sess, err := e.access.Redeem(context.Background(), e.newLink(""))
	if err != nil {
		t.Fatal(err)
	}
	e.remember(cookie)
	if !sess.Operator() || !sess.Allows(newID()) || !strings.HasPrefix(sess.Actor(), "operator session ") {
		t.Errorf("session %+v (%s): want an operator session", sess, sess.Actor())
	}
}

func TestAccessLinkExpires(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	tests := []struct {
		name    string
		advance time.Duration
		want    error
	}{
		{"just before expiry", linkTTL - time.Millisecond, nil},
		{"at expiry", linkTTL, ErrLinkExpired},
		{"long after expiry", 3 * linkTTL, ErrLinkExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token := e.newLink(newID())
			e.clock.Advance(tt.advance)
			cookie, _, err := e.access.Redeem(ctx, token)
			e.remember(cookie)
			if !errors.Is(err, tt.want) {
				t.Fatalf("redeem after %s: %v, want %v", tt.advance, err, tt.want)
			}
			if tt.want != nil && cookie != "" {
				t.Error("a refused redeem returned a cookie")
			}
		})
	}
	// An expired link is not consumed: it keeps answering "expired".
	token := e.newLink(newID())
	e.clock.Advance(linkTTL)
	for range 2 {
		if _, _, err := e.access.Redeem(ctx, token); !errors.Is(err, ErrLinkExpired) {
			t.Fatalf("redeem expired link: %v", err)
		}
	}
}

func TestAccessAlteredOrMalformedLinkIsInvalid(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	token := e.newLink(newID())
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	fresh, _ := newToken() // well formed, never stored
	tests := map[string]string{
		"empty":                 "",
		"first character":       flip(token, 0),
		"middle character":      flip(token, 20),
		"truncated":             token[:len(token)-1],
		"one character more":    token + "A",
		"padded":                token + "=",
		"standard base64":       strings.NewReplacer("-", "+", "_", "/").Replace(token[:42]) + "+",
		"not base64":            strings.Repeat("!", len(token)),
		"upper-cased":           strings.ToUpper(token),
		"well formed, unknown":  fresh,
		"path traversal":        "../" + token[3:],
		"NATS wildcard":         strings.Repeat(">", len(token)),
		"with surrounding dots": "." + token[1:len(token)-1] + ".",
	}
	for name, alt := range tests {
		t.Run(name, func(t *testing.T) {
			if alt == token {
				t.Skip("the alteration left the token unchanged")
			}
			if _, _, err := e.access.Redeem(ctx, alt); !errors.Is(err, ErrLinkInvalid) {
				t.Fatalf("redeem %q: %v, want ErrLinkInvalid", alt, err)
			}
		})
	}
	// None of that touched the real link.
	cookie, _, err := e.access.Redeem(ctx, token)
	e.remember(cookie)
	if err != nil {
		t.Fatalf("the genuine link after the altered ones: %v", err)
	}
}

func TestAccessConcurrentRedeemsOneWins(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	const rounds, racers = 5, 8
	for round := range rounds {
		token := e.newLink(newID())
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			wins    int
			used    int
			others  []error
			start   = make(chan struct{})
			cookies []string
		)
		for range racers {
			wg.Go(func() {
				<-start
				cookie, _, err := e.access.Redeem(ctx, token)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
					cookies = append(cookies, cookie)
				case errors.Is(err, ErrLinkUsed):
					used++
				default:
					others = append(others, err)
				}
			})
		}
		close(start)
		wg.Wait()
		e.remember(cookies...)
		if wins != 1 || used != racers-1 || len(others) > 0 {
			t.Fatalf("round %d: %d won, %d told used, other errors %v; want exactly 1 winner", round, wins, used, others)
		}
	}
	// Exactly one session per link exists.
	sessions := 0
	for _, k := range e.portalKeys() {
		if strings.HasPrefix(k, "session.") {
			sessions++
		}
	}
	if sessions != rounds {
		t.Errorf("%d sessions stored, want %d", sessions, rounds)
	}
}

func TestAccessSessionLifetime(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	cookie, sess, err := e.access.SignIn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.remember(cookie)
	if !sess.Operator() {
		t.Fatalf("SignIn gave %+v, want an operator session", sess)
	}
	// Use does not extend the session.
	for range 3 {
		e.clock.Advance(sessionTTL / 4)
		got, err := e.access.Session(ctx, cookie)
		if err != nil {
			t.Fatalf("session within its lifetime: %v", err)
		}
		if !got.ExpiresAt.Equal(sess.ExpiresAt) {
			t.Fatalf("use moved the expiry from %s to %s", sess.ExpiresAt, got.ExpiresAt)
		}
	}
	e.clock.Advance(sessionTTL/4 - time.Millisecond)
	if _, err := e.access.Session(ctx, cookie); err != nil {
		t.Fatalf("1ms before expiry: %v", err)
	}
	e.clock.Advance(time.Millisecond)
	if _, err := e.access.Session(ctx, cookie); !errors.Is(err, ErrNoSession) {
		t.Fatalf("at expiry: %v, want ErrNoSession", err)
	}
}

func TestAccessSignOutEndsSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	cookie, _, err := e.access.SignIn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.remember(cookie)
	other, _, err := e.access.SignIn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.remember(other)
	if err := e.access.SignOut(ctx, cookie); err != nil {
		t.Fatal(err)
	}
	if _, err := e.access.Session(ctx, cookie); !errors.Is(err, ErrNoSession) {
		t.Fatalf("session after sign-out: %v, want ErrNoSession", err)
	}
	if _, err := e.access.Session(ctx, other); err != nil {
		t.Fatalf("another session after this one signed out: %v", err)
	}
	// Signing out again, or with what is no cookie of ours, is not an error.
	for _, c := range []string{cookie, "", "not-a-cookie", strings.Repeat("A", 43)} {
		if err := e.access.SignOut(ctx, c); err != nil {
			t.Errorf("SignOut(%q): %v", c, err)
		}
	}
}

func TestAccessMalformedCookieHasNoSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, c := range []string{"", "x", strings.Repeat("A", 42), strings.Repeat("A", 44), strings.Repeat("*", 43), strings.Repeat("A", 43)} {
		if _, err := e.access.Session(context.Background(), c); !errors.Is(err, ErrNoSession) {
			t.Errorf("Session(%q): %v, want ErrNoSession", c, err)
		}
	}
}

// The bucket holds SHA-256 hashes only: whoever reads it cannot sign in.
func TestAccessBucketHoldsNoSecret(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	var tokens, cookies []string
	for range 3 {
		tokens = append(tokens, e.newLink(newID()))
	}
	tokens = append(tokens, e.newLink(""))
	for _, tok := range tokens[:2] {
		c, _, err := e.access.Redeem(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		cookies = append(cookies, c)
	}
	c, sess, err := e.access.SignIn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cookies = append(cookies, c)
	e.remember(cookies...)

	keys := e.portalKeys()
	want := map[string]bool{}
	for _, tok := range tokens {
		want["link."+hashOf(tok)] = true
	}
	for _, c := range cookies {
		want["session."+hashOf(c)] = true
	}
	shape := regexp.MustCompile(`^(link|session)\.[0-9a-f]{64}$`)
	for _, k := range keys {
		if !shape.MatchString(k) {
			t.Errorf("key %q is not link.<sha256> or session.<sha256>", k)
		}
		if !want[k] {
			t.Errorf("unexpected key %q", k)
		}
		delete(want, k)
		entry, err := e.portalKV.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		for _, secret := range append(append([]string{}, tokens...), cookies...) {
			if strings.Contains(k, secret) || strings.Contains(string(entry.Value()), secret) {
				t.Errorf("key %q or its value holds a token or cookie", k)
			}
		}
	}
	if len(want) > 0 {
		t.Errorf("keys missing from the bucket: %v", want)
	}
	// The audit reference is the start of the key's hash, not the cookie.
	if sess.Ref != hashOf(c)[:12] || strings.Contains(c, sess.Ref) {
		t.Errorf("session ref %q: want the first 12 hex digits of the cookie's hash", sess.Ref)
	}
}
