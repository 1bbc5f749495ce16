package portal

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Link and session errors. Each has its own error page.
var (
	// ErrLinkInvalid: no such link. It was altered, mistyped, or expired
	// so long ago that the bucket forgot it.
	ErrLinkInvalid = errors.New("portal link not valid")
	// ErrLinkUsed: the link has opened a session already.
	ErrLinkUsed = errors.New("portal link already used")
	// ErrLinkExpired: the link's lifetime is over.
	ErrLinkExpired = errors.New("portal link expired")
	// ErrNoSession: the cookie names no live session.
	ErrNoSession = errors.New("no session")
)

// Session is a signed-in browser. An operator session (IntegrationID "")
// sees every integration; a portal session, opened by a portal link, sees
// only its IntegrationID.
type Session struct {
	IntegrationID string    `json:"integration_id,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	ExpiresAt     time.Time `json:"expires_at"`
	// Ref names the session in audit lines: the first characters of its
	// key's hash, never the cookie itself.
	Ref string `json:"-"`
}

// Operator reports whether the session may see every integration.
func (s Session) Operator() bool { return s.IntegrationID == "" }

// Allows reports whether the session may see and change integrationID.
func (s Session) Allows(integrationID string) bool {
	return s.Operator() || s.IntegrationID == integrationID
}

// Actor names the session's holder in audit lines.
func (s Session) Actor() string {
	if s.Operator() {
		return "operator session " + s.Ref
	}
	return "portal session " + s.Ref
}

// link is a portal link's record.
type link struct {
	IntegrationID string     `json:"integration_id,omitempty"`
	ExpiresAt     time.Time  `json:"expires_at"`
	UsedAt        *time.Time `json:"used_at,omitempty"`
}

// Access keeps sessions and portal links in a JetStream KV bucket shared by
// every dispatcher, so a browser may land on any of them behind a load
// balancer, and a link works once across the whole deployment. Keys hold
// the SHA-256 of the secret (cookie value or link token), never the secret:
// whoever can read the bucket cannot sign in with what they read. The
// bucket's TTL removes records some time after they expire; the expiry in
// each record is what is enforced.
type Access struct {
	kv         jetstream.KeyValue
	sessionTTL time.Duration
	linkTTL    time.Duration
	now        func() time.Time
}

// AccessOptions set lifetimes.
type AccessOptions struct {
	// SessionTTL bounds a session's life from sign-in; it is not extended
	// by use.
	SessionTTL time.Duration
	// LinkTTL is how long a portal link can be used.
	LinkTTL time.Duration
}

// Default lifetimes, for zero AccessOptions fields.
const (
	defaultSessionTTL = 8 * time.Hour
	defaultLinkTTL    = 15 * time.Minute
)

// NewAccess returns an Access over the portal bucket.
func NewAccess(kv jetstream.KeyValue, o AccessOptions) *Access {
	a := &Access{kv: kv, sessionTTL: o.SessionTTL, linkTTL: o.LinkTTL, now: time.Now}
	if a.sessionTTL <= 0 {
		a.sessionTTL = defaultSessionTTL
	}
	if a.linkTTL <= 0 {
		a.linkTTL = defaultLinkTTL
	}
	return a
}

// LinkTTL is the lifetime of new portal links.
func (a *Access) LinkTTL() time.Duration { return a.linkTTL }

// tokenBytes is the entropy of cookies and link tokens: 256 bits.
const tokenBytes = 32

var tokenLen = base64.RawURLEncoding.EncodedLen(tokenBytes)

func newToken() (string, error) {
	b := make([]byte, tokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func hashOf(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// wellFormed rejects what cannot be one of our tokens before any lookup.
func wellFormed(token string) bool {
	if len(token) != tokenLen {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(token)
	return err == nil
}

// NewLink creates a single-use link token for integrationID ("" for an
// operator link) and returns it with its expiry.
func (a *Access) NewLink(ctx context.Context, integrationID string) (string, time.Time, error) {
	token, err := newToken()
	if err != nil {
		return "", time.Time{}, err
	}
	rec := link{IntegrationID: integrationID, ExpiresAt: a.now().Add(a.linkTTL).UTC()}
	b, _ := json.Marshal(rec)
	if _, err := a.kv.Create(ctx, "link."+hashOf(token), b); err != nil {
		return "", time.Time{}, fmt.Errorf("store portal link: %w", err)
	}
	return token, rec.ExpiresAt, nil
}

// Redeem uses a link once and opens its session. The link is marked used
// with a compare-and-set on its revision, so of two concurrent redeems
// exactly one wins.
func (a *Access) Redeem(ctx context.Context, token string) (cookie string, s Session, err error) {
	if !wellFormed(token) {
		return "", Session{}, ErrLinkInvalid
	}
	key := "link." + hashOf(token)
	e, err := a.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", Session{}, ErrLinkInvalid
	}
	if err != nil {
		return "", Session{}, fmt.Errorf("read portal link: %w", err)
	}
	var rec link
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return "", Session{}, fmt.Errorf("decode portal link: %w", err)
	}
	now := a.now().UTC()
	switch {
	case rec.UsedAt != nil:
		return "", Session{}, ErrLinkUsed
	case !now.Before(rec.ExpiresAt):
		return "", Session{}, ErrLinkExpired
	}
	rec.UsedAt = &now
	b, _ := json.Marshal(rec)
	if _, err := a.kv.Update(ctx, key, b, e.Revision()); err != nil {
		// Another request redeemed it first. A replicated bucket reports
		// the lost compare-and-set as a revision mismatch.
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return "", Session{}, ErrLinkUsed
		}
		return "", Session{}, fmt.Errorf("mark portal link used: %w", err)
	}
	return a.open(ctx, rec.IntegrationID)
}

// SignIn opens an operator session; the caller has checked the admin token.
func (a *Access) SignIn(ctx context.Context) (cookie string, s Session, err error) {
	return a.open(ctx, "")
}

func (a *Access) open(ctx context.Context, integrationID string) (string, Session, error) {
	cookie, err := newToken()
	if err != nil {
		return "", Session{}, err
	}
	now := a.now().UTC()
	key := hashOf(cookie)
	s := Session{IntegrationID: integrationID, CreatedAt: now, ExpiresAt: now.Add(a.sessionTTL), Ref: key[:12]}
	b, _ := json.Marshal(s)
	if _, err := a.kv.Create(ctx, "session."+key, b); err != nil {
		return "", Session{}, fmt.Errorf("store session: %w", err)
	}
	return cookie, s, nil
}

// Session returns the live session of a cookie value, or ErrNoSession.
func (a *Access) Session(ctx context.Context, cookie string) (Session, error) {
	if !wellFormed(cookie) {
		return Session{}, ErrNoSession
	}
	key := hashOf(cookie)
	e, err := a.kv.Get(ctx, "session."+key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Session{}, ErrNoSession
	}
	if err != nil {
		return Session{}, fmt.Errorf("read session: %w", err)
	}
	var s Session
	if err := json.Unmarshal(e.Value(), &s); err != nil {
		return Session{}, fmt.Errorf("decode session: %w", err)
	}
	if !a.now().Before(s.ExpiresAt) {
		return Session{}, ErrNoSession
	}
	s.Ref = key[:12]
	return s, nil
}

// SignOut ends the cookie's session on every dispatcher.
func (a *Access) SignOut(ctx context.Context, cookie string) error {
	if !wellFormed(cookie) {
		return nil
	}
	if err := a.kv.Delete(ctx, "session."+hashOf(cookie)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}
