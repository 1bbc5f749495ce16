// Package deliver makes one webhook attempt: it signs the body with a fresh
// timestamp, POSTs it with every header of docs/contract.md, Headers, over an
// SSRF-guarded transport, and classifies the outcome. Retries across minutes
// and hours are not done here: they are scheduled durably by the pipeline.
package deliver

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/blazelock/webhooks/dispatcher/schedule"
	"github.com/blazelock/webhooks/dispatcher/sign"
)

// Header names (docs/contract.md, Headers).
const (
	HeaderTimestamp = "X-Blazelock-Webhook-Timestamp"
	HeaderSignature = "X-Blazelock-Webhook-Signature"
	HeaderID        = "X-Blazelock-Webhook-Id"
	HeaderAttempt   = "X-Blazelock-Webhook-Attempt"
)

// MaxExcerptBytes is how much of a response body is kept (64 KiB,
// docs/contract.md, Attempt outcome).
const MaxExcerptBytes = 64 << 10

// drainBytes bounds how much more of a response is read (and discarded) so
// the connection can be reused; beyond it the connection is closed instead.
const drainBytes = 256 << 10

// Outcome classes, low-cardinality labels for metrics and the log.
const (
	ClassSuccess     = "success"
	ClassRedirect    = "http_3xx"
	ClassClientError = "http_4xx"
	ClassRateLimited = "http_429"
	ClassServerError = "http_5xx"
	ClassTimeout     = "timeout"
	ClassRefused     = "connection_refused"
	ClassReset       = "connection_reset"
	ClassDNS         = "dns"
	ClassTLS         = "tls"
	ClassSSRF        = "ssrf_refused"
	ClassNetwork     = "network"
)

// Request is what one attempt sends.
type Request struct {
	URL     string
	Secret  string
	EventID string
	Attempt int
	Body    []byte
}

// Result describes one attempt.
type Result struct {
	StartedAt  time.Time
	Duration   time.Duration
	StatusCode int    // 0 when no response arrived
	Class      string // one of the Class constants
	// Err is the transport error, without the URL (it may carry a query
	// string the customer considers private).
	Err        error
	Excerpt    []byte
	RetryAfter time.Duration // from 429/503 Retry-After, 0 if none
}

// OK reports whether the attempt succeeded (a 2xx within the timeout).
func (r Result) OK() bool { return r.Class == ClassSuccess }

// Options configure a Sender.
type Options struct {
	// DialContext dials with the connect-time SSRF check.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// IsRefusedTarget recognises the dialer's refusal, to classify it as ClassSSRF.
	IsRefusedTarget func(error) bool
	AttemptTimeout  time.Duration
	UserAgent       string
	TracerProvider  trace.TracerProvider
	// MeterProvider receives the http.client.* metrics (instrument.go).
	MeterProvider metric.MeterProvider
	// TLSConfig is for tests that trust a local CA; nil uses the system roots.
	TLSConfig *tls.Config
	// MaxIdleConnsPerHost is the keep-alive pool per host (default 64);
	// the program sets its attempt concurrency.
	MaxIdleConnsPerHost int
}

// Sender makes attempts. It is safe for concurrent use.
type Sender struct {
	client          *retryablehttp.Client
	instruments     *instruments
	attemptTimeout  time.Duration
	userAgent       string
	isRefusedTarget func(error) bool
	now             func() time.Time
}

// New builds the HTTP stack: an http.Transport whose dialer re-checks every
// resolved address, inside retryablehttp, which retries only connections
// that sent nothing (see retryConnect). Each Send is one numbered attempt,
// retries included; the minutes-to-hours schedule lives in JetStream. Each
// attempt gets a client span and the http.client.* metrics
// (instrument.go); no trace header is sent.
func New(o Options) *Sender {
	if o.MaxIdleConnsPerHost == 0 {
		o.MaxIdleConnsPerHost = 64
	}
	transport := &http.Transport{
		Proxy:                 nil, // never send webhooks through an environment proxy by accident
		DialContext:           o.DialContext,
		TLSClientConfig:       o.TLSConfig,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          4096,
		MaxIdleConnsPerHost:   o.MaxIdleConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: o.AttemptTimeout,
		ExpectContinueTimeout: time.Second,
	}
	httpClient := &http.Client{
		// keepPool hides the transport's CloseIdleConnections from
		// retryablehttp, which would otherwise flush the pool to every
		// endpoint whenever one attempt fails (go-retryablehttp issue #237).
		Transport: keepPool{transport},
		Timeout:   o.AttemptTimeout,
		// docs/contract.md, Attempt outcome: redirects are failures, never
		// followed (a redirect to a private address must not become an SSRF
		// either).
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	isRefused := o.IsRefusedTarget
	if isRefused == nil {
		isRefused = func(error) bool { return false }
	}
	client := &retryablehttp.Client{
		HTTPClient:   httpClient,
		Logger:       nil,
		RetryMax:     connectRetries,
		RetryWaitMin: connectRetryWaitMin,
		RetryWaitMax: connectRetryWaitMax,
		CheckRetry: func(ctx context.Context, _ *http.Response, err error) (bool, error) {
			// Only with budget left for the wait and another try, so that an
			// exhausted attempt reports the connection's error, not the
			// deadline's.
			if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < 2*connectRetryWaitMax {
				return false, nil
			}
			return retryConnect(err, isRefused), nil
		},
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
		Backoff:      retryablehttp.DefaultBackoff,
	}
	return &Sender{
		client: client, instruments: newInstruments(o.TracerProvider, o.MeterProvider),
		attemptTimeout: o.AttemptTimeout, userAgent: o.UserAgent, isRefusedTarget: isRefused, now: time.Now,
	}
}

// Send makes one attempt. It never returns an error: every failure is a
// Result with its class, because every failure is treated alike (retried).
func (s *Sender) Send(ctx context.Context, r Request) Result {
	start := s.now()
	if s.attemptTimeout > 0 {
		// One budget for the attempt, connection retries included.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.attemptTimeout)
		defer cancel()
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, r.URL, bytes.NewReader(r.Body))
	if err != nil {
		return Result{StartedAt: start, Class: ClassNetwork, Err: errors.New("invalid request: " + stripURL(err).Error())}
	}
	host, port := hostPort(req.URL)
	ctx, span := s.instruments.start(ctx, host, port)
	res := s.send(req.WithContext(ctx), r, start)
	s.instruments.end(ctx, span, host, port, len(r.Body), res)
	return res
}

func (s *Sender) send(req *retryablehttp.Request, r Request, start time.Time) Result {
	res := Result{StartedAt: start}
	ts := start.Unix()
	h := req.Header
	h["Content-Type"] = []string{"application/json"}
	h["User-Agent"] = []string{s.userAgent}
	h[HeaderTimestamp] = []string{strconv.FormatInt(ts, 10)}
	h[HeaderSignature] = []string{sign.Signature(r.Secret, ts, r.Body)}
	h[HeaderID] = []string{r.EventID}
	h[HeaderAttempt] = []string{strconv.Itoa(r.Attempt)}

	resp, err := s.client.Do(req)
	if err != nil {
		res.Duration = s.now().Sub(start)
		res.Class, res.Err = s.classifyError(err), stripURL(err)
		if resp != nil {
			resp.Body.Close()
		}
		return res
	}
	defer resp.Body.Close()
	res.StatusCode = resp.StatusCode
	excerpt, readErr := io.ReadAll(io.LimitReader(resp.Body, MaxExcerptBytes))
	res.Excerpt = excerpt
	if readErr == nil {
		_, readErr = io.Copy(io.Discard, io.LimitReader(resp.Body, drainBytes))
	}
	res.Duration = s.now().Sub(start)
	res.Class = classifyStatus(resp.StatusCode)
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		if d, ok := schedule.ParseRetryAfter(resp.Header.Get("Retry-After"), start); ok {
			res.RetryAfter = d
		}
	}
	// A 2xx whose body could not be read within the timeout did not complete
	// within 15 s of the request start: docs/contract.md, Attempt outcome,
	// counts it as a failure.
	if readErr != nil && res.Class == ClassSuccess {
		res.Class, res.Err = s.classifyError(readErr), stripURL(readErr)
	}
	return res
}

func classifyStatus(code int) string {
	switch {
	case code >= 200 && code < 300:
		return ClassSuccess
	case code == http.StatusTooManyRequests:
		return ClassRateLimited
	case code >= 300 && code < 400:
		return ClassRedirect
	case code >= 400 && code < 500:
		return ClassClientError
	default:
		return ClassServerError
	}
}

func (s *Sender) classifyError(err error) string {
	var dnsErr *net.DNSError
	var netErr net.Error
	var tlsErr *tls.CertificateVerificationError
	var recordErr tls.RecordHeaderError
	switch {
	case s.isRefusedTarget(err):
		return ClassSSRF
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return ClassTimeout
	case errors.As(err, &netErr) && netErr.Timeout():
		return ClassTimeout
	case errors.As(err, &dnsErr):
		return ClassDNS
	case errors.As(err, &tlsErr), errors.As(err, &recordErr):
		return ClassTLS
	case errors.Is(err, syscall.ECONNREFUSED):
		return ClassRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.EPIPE):
		return ClassReset
	default:
		return ClassNetwork
	}
}

// stripURL removes the *url.Error wrapper, whose message repeats the URL.
func stripURL(err error) error {
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		return urlErr.Err
	}
	return err
}

// Connection retries inside one attempt (retryConnect).
const (
	connectRetries      = 2
	connectRetryWaitMin = 100 * time.Millisecond
	connectRetryWaitMax = time.Second
)

// retryConnect says whether a failed try may be repeated within the same
// attempt: only when the connection could not be made, so not a byte of
// the request left (an endpoint restarting, a full accept queue), and not
// when the SSRF rule refused the address or the name does not exist, which
// another try within a second would not change. The attempt's budget
// (AttemptTimeout) bounds the tries together; the delivery records one
// attempt with the last try's outcome.
func retryConnect(err error, isRefused func(error) bool) bool {
	var opErr *net.OpError
	var dnsErr *net.DNSError
	switch {
	case err == nil || isRefused(err):
		return false
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return false
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return false
	}
	return errors.As(err, &opErr) && opErr.Op == "dial"
}

// keepPool passes requests to the transport but not its
// CloseIdleConnections (see New).
type keepPool struct{ base http.RoundTripper }

func (t keepPool) RoundTrip(r *http.Request) (*http.Response, error) { return t.base.RoundTrip(r) }
