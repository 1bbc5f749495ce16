package natsinfra

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Provisioning asks again after a lost or refused answer, and only then.
func TestRetry(t *testing.T) {
	ctx := context.Background()
	calls := 0
	err := retry(ctx, func(ctx context.Context) error {
		calls++
		if _, ok := ctx.Deadline(); !ok {
			t.Error("a step runs without a deadline")
		}
		switch calls {
		case 1:
			return fmt.Errorf("create: %w", context.DeadlineExceeded)
		case 2:
			return nats.ErrNoResponders
		case 3:
			return &jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"}
		case 4:
			return &jetstream.APIError{Code: 400, ErrorCode: 10005, Description: "no suitable peers for placement, peer offline"}
		}
		return nil
	})
	if err != nil || calls != 5 {
		t.Fatalf("retry = %v after %d calls, want success after 5", err, calls)
	}

	calls = 0
	refused := errors.New("insufficient resources")
	if err := retry(ctx, func(context.Context) error { calls++; return refused }); !errors.Is(err, refused) || calls != 1 {
		t.Fatalf("retry = %v after %d calls, want the error at once", err, calls)
	}

	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = retry(short, func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Fatalf("retry = %v after %s, want it to end with the caller's context", err, time.Since(start))
	}
}
