package publisher_test

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/blazelock/webhooks/publisher"
	"github.com/blazelock/webhooks/schemas"
)

// A scan service publishes a completed scan. Publishing the same Event (same
// ID) again after a timeout is safe: JetStream reports it as a duplicate.
func Example() {
	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		fmt.Println("connect:", err)
		return
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	pub := publisher.New(js)

	now := schemas.At(time.Now())
	duration := int64(1840)
	res, err := pub.Publish(context.Background(), publisher.Event{
		Name:          schemas.EventCompleted,
		IntegrationID: "0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c01",
		OccurredAt:    now,
		Data: schemas.FileScan{
			ID: "019583d8-b2e4-7b8d-9d1f-6f4cb3d0b6f1", Status: schemas.StatusCompleted,
			ExecutionMode: schemas.ModeAsync, FileName: "invoice.pdf", FileSize: 245761,
			SubmittedAt: now, CompletedAt: &now, ScanDurationMillis: &duration,
			FileType: "application/pdf",
			FileHash: &schemas.FileHash{
				MD5:    "d41d8cd98f00b204e9800998ecf8427e",
				SHA1:   "da39a3ee5e6b4b0d3255bfef95601890afd80709",
				SHA256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
			},
			Result: &schemas.ScanResult{Safe: true, Detailed: "clean", Findings: []schemas.Finding{}},
		},
	})
	if err != nil {
		fmt.Println("publish:", err)
		return
	}
	fmt.Println(res.EventID, res.Duplicate)
}
