package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/blazelock/webhooks/config"
	"github.com/blazelock/webhooks/publisher"
	"github.com/blazelock/webhooks/schemas"
)

// publishCommand publishes one event through the publisher package, the
// same code path scan services use.
func publishCommand(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dispatcher publish", flag.ContinueOnError)
	fs.SetOutput(stderr)
	natsURL := fs.String("nats", firstNonEmpty(getenv("NATS_URL"), runningEmbeddedURL(getenv), nats.DefaultURL), "NATS server URL (default: NATS_URL, else the address the embedded default recorded in its data dir, else "+nats.DefaultURL+")")
	integration := fs.String("integration", "", "integration id (UUID), required")
	event := fs.String("event", schemas.EventCompleted, "event: "+strings.Join(schemas.EventNames, ", "))
	dataPath := fs.String("data", "", "file holding the data object (JSON); - reads stdin")
	sample := fs.Bool("sample", false, "publish a generated sample data object for the event instead of -data")
	id := fs.String("id", "", "event id (UUID); default: a new UUIDv7. Reuse one to see de-duplication")
	occurredAt := fs.String("occurred-at", "", "occurred_at, RFC 3339 UTC with milliseconds; default: now")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: dispatcher publish -integration ID [-event NAME] (-data FILE | -data - | -sample) [-id UUID]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *integration == "" || (*dataPath == "") == !*sample {
		fs.Usage()
		return errors.New("publish needs -integration and exactly one of -data or -sample")
	}

	at := schemas.At(time.Now())
	if *occurredAt != "" {
		t, err := time.Parse(schemas.TimestampLayout, *occurredAt)
		if err != nil {
			return fmt.Errorf("-occurred-at %q: want %s", *occurredAt, schemas.TimestampLayout)
		}
		at = schemas.At(t)
	}
	var data any
	if *sample {
		data = publisher.SampleScan(*event, at)
	} else {
		raw, err := readData(*dataPath, stdin)
		if err != nil {
			return err
		}
		data = json.RawMessage(raw)
	}

	nc, err := nats.Connect(*natsURL, nats.Name("blazelock-publish"), nats.Timeout(5*time.Second))
	if err != nil {
		return fmt.Errorf("cannot reach NATS at %s: %w (is `go run ./dispatcher` running? it prints the NATS URL)", redactURL(*natsURL), err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	res, err := publisher.New(js).Publish(ctx, publisher.Event{
		ID: *id, Name: *event, IntegrationID: *integration, OccurredAt: at, Data: data,
	})
	if errors.Is(err, jetstream.ErrNoStreamResponse) {
		return fmt.Errorf("%w (no stream takes events at %s: is it the dispatcher's NATS? `go run ./dispatcher` prints its address)", err, redactURL(*natsURL))
	}
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(map[string]any{
		"event_id": res.EventID, "subject": res.Subject, "stream_sequence": res.Sequence, "duplicate": res.Duplicate,
	})
}

// embeddedURLFile is where the embedded default records its NATS address.
func embeddedURLFile(dataDir string) string { return filepath.Join(dataDir, "nats-url") }

// runningEmbeddedURL is the address a running embedded default recorded
// ("" if none), in DISPATCHER_DATA_DIR or the default data dir.
func runningEmbeddedURL(getenv func(string) string) string {
	b, err := os.ReadFile(embeddedURLFile(firstNonEmpty(getenv("DISPATCHER_DATA_DIR"), config.Defaults().DataDir)))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func readData(path string, stdin io.Reader) ([]byte, error) {
	if path == "-" {
		b, err := io.ReadAll(io.LimitReader(stdin, 4<<20))
		if err != nil {
			return nil, fmt.Errorf("read data from stdin: %w", err)
		}
		return b, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read -data: %w", err)
	}
	return b, nil
}

func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}
