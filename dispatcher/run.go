package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/blazelock/webhooks/config"
	"github.com/blazelock/webhooks/dispatcher/api"
	"github.com/blazelock/webhooks/dispatcher/consume"
	"github.com/blazelock/webhooks/dispatcher/deliver"
	"github.com/blazelock/webhooks/dispatcher/deliverylog"
	"github.com/blazelock/webhooks/dispatcher/fleet"
	"github.com/blazelock/webhooks/dispatcher/flow"
	"github.com/blazelock/webhooks/dispatcher/pipeline"
	"github.com/blazelock/webhooks/dispatcher/portal"
	"github.com/blazelock/webhooks/dispatcher/replay"
	"github.com/blazelock/webhooks/dispatcher/retrylane"
	"github.com/blazelock/webhooks/dispatcher/schedule"
	"github.com/blazelock/webhooks/dispatcher/target"
	"github.com/blazelock/webhooks/dispatcher/webhooks"
	"github.com/blazelock/webhooks/internal/natsinfra"
	"github.com/blazelock/webhooks/internal/telemetry"
)

// version is reported in User-Agent and logs; set with -ldflags "-X main.version=...".
var version = "dev"

// run starts the dispatcher and serves until ctx is cancelled.
func run(ctx context.Context, cfg config.Config, logOut io.Writer) error {
	a, err := start(ctx, cfg, newLogger(cfg, logOut))
	if err != nil {
		return err
	}
	if a.generatedTokenPath != "" {
		// Shown once, when generated, and never logged.
		fmt.Fprintf(logOut, "\nGenerated a management API token (kept in %s):\n\n    %s\n\n", a.generatedTokenPath, a.cfg.AdminToken)
	}
	if cfg.Embedded() {
		// The embedded default is a developer's own machine: a one-time
		// operator link opens the Webhook section without copying the
		// token. Printed, never logged; production prints none.
		link, expires, err := a.portal.OperatorLink(ctx, "http://"+a.httpAddr)
		if err != nil {
			a.logger.Warn("could not create a sign-in link for the Webhook section", "err", err)
		} else {
			fmt.Fprintf(logOut, "\nWebhook section (one-time sign-in link, valid until %s):\n\n    %s\n\n",
				expires.Local().Format("15:04"), link)
		}
	}
	return a.wait(ctx)
}

// app is one running dispatcher. closers run in reverse order at shutdown.
type app struct {
	cfg      config.Config
	logger   *slog.Logger
	nc       *nats.Conn
	httpAddr string
	store    *webhooks.Store
	portal   *portal.Server
	// generatedTokenPath is where the embedded default wrote a new token.
	generatedTokenPath string
	natsURL            string
	ready              atomic.Bool
	httpServer         *http.Server
	httpDone           chan error
	lanes              sync.WaitGroup
	stopLanes          context.CancelFunc
	scheduler          *flow.Scheduler
	// pulls says whether JetStream answers the lanes' pulls; set before
	// ready.
	pulls   *consume.Watchdog
	closers []func(context.Context)
}

// start brings everything up. On error, whatever was started is closed.
func start(ctx context.Context, cfg config.Config, logger *slog.Logger, spanProcessors ...sdktrace.SpanProcessor) (_ *app, err error) {
	a := &app{logger: logger, httpDone: make(chan error, 1)}
	defer func() {
		if err != nil {
			a.close(context.Background())
		}
	}()
	if cfg.Embedded() {
		dev, err := ensureDevSecrets(cfg.DataDir, logger)
		if err != nil {
			return nil, err
		}
		if cfg.AdminToken == "" {
			cfg.AdminToken, a.generatedTokenPath = dev.AdminToken, dev.TokenPath
		}
		if cfg.SecretKey == nil {
			cfg.SecretKey = dev.SecretKey
		}
	}
	a.cfg = cfg

	tel, err := telemetry.Setup(ctx, telemetry.Options{ServiceName: "blazelock-dispatcher", Version: version, OTLP: cfg.OTLPEndpoint != "", SpanProcessors: spanProcessors})
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, func(ctx context.Context) {
		if err := tel.Shutdown(ctx); err != nil {
			logger.Warn("telemetry shutdown", "err", err)
		}
	})
	logger = slog.New(telemetry.TraceHandler{Handler: logger.Handler()})
	a.logger = logger

	nc, js, closeNATS, err := connectNATS(ctx, cfg, logger)
	if err != nil {
		return nil, err
	}
	a.nc, a.natsURL = nc, nc.ConnectedUrl()
	a.closers = append(a.closers, func(context.Context) { closeNATS() })

	provisioned := provisionOptions(cfg)
	provisionCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = natsinfra.Provision(provisionCtx, js, provisioned)
	cancel()
	if err != nil {
		return nil, err
	}
	webhooksKV, err := js.KeyValue(ctx, natsinfra.WebhooksBucket)
	if err != nil {
		return nil, fmt.Errorf("open KV bucket %s: %w", natsinfra.WebhooksBucket, err)
	}
	deliveriesKV, err := js.KeyValue(ctx, natsinfra.DeliveriesBucket)
	if err != nil {
		return nil, fmt.Errorf("open KV bucket %s: %w", natsinfra.DeliveriesBucket, err)
	}
	portalKV, err := js.KeyValue(ctx, natsinfra.PortalBucket)
	if err != nil {
		return nil, fmt.Errorf("open KV bucket %s: %w", natsinfra.PortalBucket, err)
	}

	rdb, err := connectRedis(ctx, cfg, logger)
	if err != nil {
		return nil, err
	}
	if rdb != nil {
		a.closers = append(a.closers, func(context.Context) { _ = rdb.Close() })
	}
	store, err := webhooks.New(webhooksKV, rdb, webhooks.Options{
		SecretKey: cfg.SecretKey, RedisKeyPrefix: cfg.RedisKeyPrefix, Logger: logger,
	})
	if err != nil {
		return nil, err
	}
	a.store = store
	a.closers = append(a.closers, func(context.Context) { store.Close() })

	policy := target.Policy{AllowPrivate: cfg.AllowPrivateTargets}
	if cfg.AllowPrivateTargets {
		logger.Warn("DISPATCHER_ALLOW_PRIVATE_TARGETS=true: http and private/loopback webhook targets are allowed (local development only)")
	}
	meter := tel.MeterProvider.Meter("github.com/blazelock/webhooks/dispatcher")
	metrics, err := pipeline.NewMetrics(meter)
	if err != nil {
		return nil, err
	}
	deliveryLog := deliverylog.New(deliveriesKV)
	lane := retrylane.New(js)
	tunables := cfg.Pipeline
	retryPolicy, err := schedule.New(tunables.RetryDelays...)
	if err != nil {
		return nil, fmt.Errorf("DISPATCHER_RETRY_SCHEDULE: %w", err)
	}
	pipe := pipeline.New(pipeline.Deps{
		Webhooks: store,
		Sender: deliver.New(deliver.Options{
			DialContext:     target.NewDialer(policy, 5*time.Second).DialContext,
			IsRefusedTarget: func(err error) bool { return errors.Is(err, target.ErrRefused) },
			AttemptTimeout:  tunables.AttemptTimeout,
			UserAgent:       "Blazelock-Webhooks/" + version,
			TracerProvider:  tel.TracerProvider,
			MeterProvider:   tel.MeterProvider,
			// Integrations may share a host (a hosted receiver, or the bench's
			// one receiver): an idle pool smaller than the attempts that can be
			// in flight to it closes connections that are dialled again
			// moments later.
			MaxIdleConnsPerHost: tunables.Concurrency,
		}),
		DeliveryLog:   deliveryLog,
		RetryLane:     lane,
		RetryPolicy:   retryPolicy,
		Metrics:       metrics,
		Logger:        logger,
		Tracer:        tel.TracerProvider.Tracer("github.com/blazelock/webhooks/dispatcher"),
		Extractor:     tel.Propagator,
		MaxEventBytes: tunables.MaxEventBytes,
		AckWait:       provisioned.AckWait,
	})
	// The fleet tells how many dispatchers share each endpoint's cap. It
	// is left after the attempts have ended (closers run after the
	// scheduler's shutdown), so the others never raise their share while
	// this process still has attempts open.
	members, err := fleet.Join(ctx, js, fleet.Options{Logger: logger, OnChange: func(size int) {
		logger.Info("dispatcher fleet changed", "dispatchers", size,
			"endpoint_share", max(1, tunables.EndpointMaxConcurrency/size))
	}})
	if err != nil {
		return nil, fmt.Errorf("join the dispatcher fleet: %w", err)
	}
	a.closers = append(a.closers, func(ctx context.Context) {
		if err := members.Close(ctx); err != nil {
			logger.Warn("leaving the dispatcher fleet", "err", err)
		}
	})
	a.scheduler = flow.New(flow.Options{
		Concurrency:    tunables.Concurrency,
		EndpointMax:    tunables.EndpointMaxConcurrency,
		FleetSize:      members.Size,
		QueueMax:       tunables.QueueMaxMessages,
		AttemptTimeout: tunables.AttemptTimeout,
		// Three renewals per AckWait: a waiting message is never handed
		// to another process.
		KeepAliveEvery: provisioned.AckWait / 3,
		// Hanging endpoints' backlog may hold a quarter of the events
		// consumer's ack window; the rest waits in the retry lane.
		StalledBacklog: provisioned.MaxAckPending / 4,
		Logger:         logger,
	})
	if err := a.scheduler.Instrument(meter); err != nil {
		return nil, err
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, http.StatusOK, "ok", "")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if reason := a.unready(); reason != "" {
			writeStatus(w, http.StatusServiceUnavailable, "not ready", reason)
			return
		}
		writeStatus(w, http.StatusOK, "ready", "")
	})
	mux.Handle("GET /metrics", tel.MetricsHandler)
	deliveries := replay.New(deliveryLog, lane, js)
	a.portal = portal.New(portal.Deps{
		Webhooks: store, Deliveries: deliveries, AdminToken: cfg.AdminToken,
		Access:    portal.NewAccess(portalKV, portal.AccessOptions{SessionTTL: cfg.PortalSessionTTL, LinkTTL: cfg.PortalLinkTTL}),
		URLPolicy: policy, Resolver: net.DefaultResolver, PublicURL: cfg.PublicURL,
		FrameAncestors: cfg.PortalFrameAncestors, Logger: logger,
	})
	mux.Handle(portal.Prefix, a.portal.Handler())
	mux.Handle("GET /{$}", http.RedirectHandler(portal.Prefix, http.StatusSeeOther))
	mux.Handle("/", api.New(api.Deps{
		Webhooks: store, Deliveries: deliveries, PortalLinks: a.portal, AdminToken: cfg.AdminToken,
		URLPolicy: policy, Resolver: net.DefaultResolver, Logger: logger,
	}).Handler())

	listener, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("listen on DISPATCHER_HTTP_ADDR %s: %w", cfg.HTTPAddr, err)
	}
	a.httpAddr = listener.Addr().String()
	a.httpServer = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { a.httpDone <- a.httpServer.Serve(listener) }()
	if cfg.PprofAddr != "" {
		if err := a.servePprof(cfg.PprofAddr); err != nil {
			return nil, err
		}
	}

	if err := a.startLanes(ctx, js, pipe, meter); err != nil {
		return nil, err
	}
	a.ready.Store(true)
	logger.Info("dispatcher ready", "version", version, "http", "http://"+a.httpAddr,
		"nats", nc.ConnectedUrlRedacted(), "nats_server_version", nc.ConnectedServerVersion(),
		"redis", rdb != nil, "max_attempts", retryPolicy.MaxAttempts(), "retry_schedule", retryPolicy.String())
	return a, nil
}

// unready says why the process is not ready, or "".
func (a *app) unready() string {
	switch {
	case !a.ready.Load():
		return "starting or stopping"
	case !a.nc.IsConnected():
		return "NATS disconnected, reconnecting"
	default:
		return a.pulls.Stalled()
	}
}

// pullBatch is how many messages each lane's client buffers ahead of the
// scheduler. Buffered messages' AckWait is running, so it stays small
// beside the scheduler's queue budget; nats.go pulls again below half.
const pullBatch = 500

// startLanes binds the two durable consumers and starts pulling.
func (a *app) startLanes(ctx context.Context, js jetstream.JetStream, pipe *pipeline.Pipeline, meter metric.Meter) error {
	laneCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	a.stopLanes = stop
	a.scheduler.Start(laneCtx)
	a.pulls = consume.NewWatchdog(consume.WatchdogOptions{
		StallAfter: consume.DefaultStallAfter, Conn: a.nc, Logger: a.logger,
	})
	a.lanes.Add(1)
	go func() {
		defer a.lanes.Done()
		a.pulls.Run(laneCtx)
	}()
	lanes := []struct {
		stream, consumer, name string
		handle                 consume.Handler
		park                   consume.Parker
		key                    func(subject string) string
	}{
		{natsinfra.EventsStream, natsinfra.EventsConsumer, "events", pipe.HandleEvent, pipe.ParkEvent, func(subject string) string {
			id, _, _ := natsinfra.ParseEventSubject(subject)
			return id // "" for a malformed subject: it is rejected in its turn
		}},
		{natsinfra.RetriesStream, natsinfra.RetriesConsumer, "retries", pipe.HandleRetry, pipe.ParkRetry, func(subject string) string {
			return strings.TrimPrefix(subject, natsinfra.RetriesDuePrefix)
		}},
	}
	var consumers []jetstream.Consumer
	for _, l := range lanes {
		cons, err := js.Consumer(ctx, l.stream, l.consumer)
		if err != nil {
			return fmt.Errorf("bind consumer %s: %w", l.consumer, err)
		}
		consumers = append(consumers, cons)
		a.lanes.Add(1)
		go func() {
			defer a.lanes.Done()
			err := consume.Run(laneCtx, cons, l.handle, consume.Options{
				Scheduler: a.scheduler, Key: l.key, Park: l.park, PullBatch: pullBatch,
				ShutdownTimeout: a.cfg.Pipeline.ShutdownTimeout, Logger: a.logger, Name: l.name,
				Watchdog: a.pulls,
			})
			if err != nil {
				a.logger.Error("consumer stopped", "lane", l.name, "err", err)
			}
		}()
	}
	// Consumer lag: messages not yet delivered to any dispatcher, per lane.
	_, err := meter.Int64ObservableGauge("webhook.consumer.pending",
		metric.WithDescription("messages waiting in JetStream for a dispatcher, per lane"),
		metric.WithInt64Callback(func(ctx context.Context, o metric.Int64Observer) error {
			for i, cons := range consumers {
				info, err := cons.Info(ctx)
				if err != nil {
					continue
				}
				o.Observe(int64(info.NumPending), metric.WithAttributes(attribute.String("lane", lanes[i].name)))
			}
			return nil
		}))
	return err
}

// wait serves until ctx ends, then shuts down in a fixed order: stop
// pulling and finish in-flight attempts (bounded), stop HTTP, then the
// closers in reverse: store watcher, Redis, NATS drain, embedded server,
// telemetry flush.
func (a *app) wait(ctx context.Context) error {
	var serveErr error
	select {
	case <-ctx.Done():
		a.logger.Info("shutting down")
	case err := <-a.httpDone:
		serveErr = fmt.Errorf("HTTP server stopped: %w", err)
	}
	a.close(context.WithoutCancel(ctx))
	return serveErr
}

func (a *app) close(ctx context.Context) {
	wasReady := a.ready.Swap(false)
	ctx, cancel := context.WithTimeout(ctx, a.cfg.Pipeline.ShutdownTimeout+5*time.Second)
	defer cancel()
	if a.stopLanes != nil {
		a.stopLanes()
		a.lanes.Wait()
	}
	if a.scheduler != nil {
		// Waiting messages are handed back at once; attempts in flight
		// finish and are settled, up to the shutdown timeout.
		attemptsCtx, cancelAttempts := context.WithTimeout(ctx, a.cfg.Pipeline.ShutdownTimeout)
		if err := a.scheduler.Shutdown(attemptsCtx); err != nil {
			a.logger.Warn("in-flight attempts still running at shutdown; JetStream redelivers them after AckWait")
		}
		cancelAttempts()
	}
	if a.httpServer != nil {
		if err := a.httpServer.Shutdown(ctx); err != nil {
			a.logger.Warn("HTTP server shutdown", "err", err)
		}
	}
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i](ctx)
	}
	a.closers = nil
	if wasReady {
		a.logger.Info("stopped")
	}
}

func provisionOptions(cfg config.Config) natsinfra.Options {
	o := natsinfra.DefaultOptions()
	o.Replicas = cfg.NATSReplicas
	if cfg.NATSMemoryStorage {
		o.Storage = jetstream.MemoryStorage
	}
	o.EventsMaxAge = cfg.EventRetention
	o.DuplicateWindow = cfg.DuplicateWindow
	// An attempt may take AttemptTimeout plus config lookup, recording and
	// scheduling; past AckWait JetStream hands the message to another
	// process, which is also how a crashed dispatcher's work is recovered.
	o.AckWait = 2*cfg.Pipeline.AttemptTimeout + 5*time.Second
	o.PortalTTL = max(cfg.PortalSessionTTL, cfg.PortalLinkTTL) + time.Hour
	return o
}

// connectNATS starts the embedded server when no NATS_URL is set, connects,
// and checks the server. The returned func closes what was opened.
func connectNATS(ctx context.Context, cfg config.Config, logger *slog.Logger) (*nats.Conn, jetstream.JetStream, func(), error) {
	url := cfg.NATSURL
	var embedded *server.Server
	if cfg.Embedded() {
		s, err := natsinfra.StartEmbedded(natsinfra.EmbeddedOptions{
			StoreDir:       cfg.DataDir, // nats-server adds "jetstream"
			Listen:         cfg.NATSListen,
			ListenExplicit: cfg.NATSListenExplicit,
			Logger:         logger,
		})
		if err != nil {
			return nil, nil, nil, err
		}
		embedded = s
		url = s.ClientURL()
		if url != "nats://"+cfg.NATSListen {
			logger.Warn("default NATS port busy: embedded NATS listens elsewhere", "url", url)
		}
		logger.Info("embedded NATS started; publishers connect here", "url", url, "store", filepath.Join(cfg.DataDir, "jetstream"))
		// `dispatcher publish` reads the address here when NATS_URL is
		// unset: the port differs from 4222 whenever that one is busy.
		if err := os.WriteFile(embeddedURLFile(cfg.DataDir), []byte(url+"\n"), 0o644); err != nil {
			logger.Warn("cannot record the embedded NATS address for `dispatcher publish`", "err", err)
		}
	}
	closeAll := func(nc *nats.Conn) {
		if nc != nil {
			_ = nc.Drain()
			for i := 0; i < 100 && !nc.IsClosed(); i++ {
				time.Sleep(50 * time.Millisecond)
			}
		}
		if embedded != nil {
			embedded.Shutdown()
			embedded.WaitForShutdown()
			_ = os.Remove(embeddedURLFile(cfg.DataDir))
		}
	}
	nc, err := nats.Connect(url,
		nats.Name("blazelock-dispatcher"),
		nats.Timeout(5*time.Second),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logger.Warn("NATS disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { logger.Info("NATS reconnected", "url", c.ConnectedUrlRedacted()) }),
	)
	if err != nil {
		closeAll(nil)
		return nil, nil, nil, fmt.Errorf("cannot reach NATS at %s: %w (is nats-server running with -js? unset NATS_URL to use the embedded server)", redactURL(url), err)
	}
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(10*time.Second))
	if err != nil {
		closeAll(nc)
		return nil, nil, nil, fmt.Errorf("open JetStream: %w", err)
	}
	checkCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := natsinfra.CheckServer(checkCtx, nc, js); err != nil {
		closeAll(nc)
		return nil, nil, nil, err
	}
	return nc, js, func() { closeAll(nc) }, nil
}

// connectRedis opens the cache client: one Redis, the primary that Redis
// Sentinel names (REDIS_URL in go-redis's failover form, see
// config.RedisSentinel), followed through failovers by go-redis, or a Redis
// Cluster (config.RedisCluster). Redis is optional at run time (reads fall
// back to KV), so an unreachable Redis at start is a warning, not an error.
func connectRedis(ctx context.Context, cfg config.Config, logger *slog.Logger) (redis.UniversalClient, error) {
	if cfg.RedisURL == "" {
		return nil, nil // the webhook store warns that it reads KV only
	}
	var rdb redis.UniversalClient
	switch {
	case config.RedisCluster(cfg.RedisURL):
		opts, err := redis.ParseClusterURL(cfg.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("REDIS_URL: %w", err)
		}
		tuneRedis(&opts.ClientName, &opts.ContextTimeoutEnabled, &opts.DialTimeout, &opts.ReadTimeout, &opts.WriteTimeout, &opts.MaxRetries, &opts.DialerRetries)
		rdb = redis.NewClusterClient(opts)
	case config.RedisSentinel(cfg.RedisURL):
		opts, err := redis.ParseFailoverURL(cfg.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("REDIS_URL: %w", err)
		}
		tuneRedis(&opts.ClientName, &opts.ContextTimeoutEnabled, &opts.DialTimeout, &opts.ReadTimeout, &opts.WriteTimeout, &opts.MaxRetries, &opts.DialerRetries)
		rdb = redis.NewFailoverClient(opts)
	default:
		opts, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("REDIS_URL: %w", err)
		}
		tuneRedis(&opts.ClientName, &opts.ContextTimeoutEnabled, &opts.DialTimeout, &opts.ReadTimeout, &opts.WriteTimeout, &opts.MaxRetries, &opts.DialerRetries)
		rdb = redis.NewClient(opts)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := rdb.Ping(pingCtx).Err(); err != nil {
		logger.Warn("Redis unreachable at start: reading webhook configs from JetStream KV until it answers", "redis", redactURL(cfg.RedisURL), "err", err)
	}
	return rdb, nil
}

// tuneRedis sets what every dispatcher's Redis client needs, whichever
// form REDIS_URL has (go-redis's plain, failover and cluster options have
// these fields each).
func tuneRedis(clientName *string, contextTimeout *bool, dial, read, write *time.Duration, maxRetries, dialerRetries *int) {
	*clientName = "blazelock-dispatcher"
	// Without this, go-redis applies ctx deadlines only to waiting for a
	// pooled connection, not to socket I/O: a hung Redis would stall attempts.
	*contextTimeout = true
	*dial, *read, *write = 2*time.Second, time.Second, time.Second
	*maxRetries = 1
	// go-redis dials a refused address 5 times, 100 ms apart, on each try
	// (a cluster client makes up to 4): a killed primary held every cache
	// read, and so every delivery, for about 2.5 s
	// (reliability.TestRedisClusterFailover). The cache falls back to KV
	// on the first error and probes Redis again itself, so one dial is
	// enough.
	*dialerRetries = 1
}

// writeStatus answers a probe: {"status": ..., "reason": ...}, the
// reason only when there is one.
func writeStatus(w http.ResponseWriter, code int, status, reason string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(struct {
		Status string `json:"status"`
		Reason string `json:"reason,omitempty"`
	}{status, reason})
}
