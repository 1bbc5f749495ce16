package deploy

// These tests check the local stack's files against the code they run, with
// no Docker engine: docker-compose.yml, deploy/Dockerfile, deploy/demo.sh,
// deploy/otel-collector.yaml, Taskfile.yml and the configuration table of
// README.md. What they cannot check (images pulling, containers starting,
// the collector accepting its configuration) needs `docker compose up`; see
// README.md.

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"gopkg.in/yaml.v3"

	"github.com/blazelock/webhooks/config"
	"github.com/blazelock/webhooks/dispatcher/target"
	"github.com/blazelock/webhooks/internal/natsinfra"
	"github.com/blazelock/webhooks/internal/testinfra"
)

const (
	composePath    = "../docker-compose.yml"
	taskfilePath   = "../Taskfile.yml"
	readmePath     = "../README.md"
	dockerfilePath = "Dockerfile"
	collectorPath  = "otel-collector.yaml"
	demoPath       = "demo.sh"
)

// docker-compose.yml, decoded into the fields the checks read.

type composeFile struct {
	Services map[string]service `yaml:"services"`
	Networks map[string]struct {
		IPAM struct {
			Config []struct {
				Subnet  string `yaml:"subnet"`
				IPRange string `yaml:"ip_range"`
			} `yaml:"config"`
		} `yaml:"ipam"`
	} `yaml:"networks"`
	Volumes map[string]any `yaml:"volumes"`
}

type service struct {
	Image string `yaml:"image"`
	Build *struct {
		Dockerfile string `yaml:"dockerfile"`
		Target     string `yaml:"target"`
	} `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	Restart         string          `yaml:"restart"`
	Profiles        []string        `yaml:"profiles"`
	Ports           []string        `yaml:"ports"`
	Volumes         []string        `yaml:"volumes"`
	Networks        serviceNetworks `yaml:"networks"`
	StopGracePeriod string          `yaml:"stop_grace_period"`
}

// target is the Dockerfile stage a service is built from; empty for a
// service that runs a published image.
func (s service) target() string {
	if s.Build == nil {
		return ""
	}
	return s.Build.Target
}

func (c composeFile) has(name string) bool {
	_, ok := c.Services[name]
	return ok
}

func (s service) oneShot() bool { return s.Restart == "no" }

// volumeAt returns the volume a service mounts at dir, and whether read-only.
func (s service) volumeAt(dir string) (source string, readOnly bool) {
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[1] == dir {
			return parts[0], len(parts) == 3 && parts[2] == "ro"
		}
	}
	return "", false
}

// serviceNetworks accepts both compose forms: a list of network names, or a
// map of name to attachment settings.
type serviceNetworks map[string]networkAttachment

type networkAttachment struct {
	IPv4Address string `yaml:"ipv4_address"`
}

func (n *serviceNetworks) UnmarshalYAML(v *yaml.Node) error {
	var names []string
	if v.Decode(&names) != nil {
		return v.Decode((*map[string]networkAttachment)(n))
	}
	*n = serviceNetworks{}
	for _, name := range names {
		(*n)[name] = networkAttachment{}
	}
	return nil
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	var c composeFile
	if err := yaml.Unmarshal([]byte(readFile(t, composePath)), &c); err != nil {
		t.Fatalf("%s: %v", composePath, err)
	}
	return c
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// expand interpolates a compose value with an empty environment: the file's
// own defaults are what the stack runs with, so they are what gets checked.
// A variable without a default is an error: the stack must not depend on
// the caller's shell.
func expand(t *testing.T, where, s string) string {
	t.Helper()
	return os.Expand(s, func(v string) string {
		if v == "$" {
			return "$"
		}
		_, def, ok := strings.Cut(v, ":-")
		if !ok {
			t.Errorf("%s: %q: write ${%s:-default}, or $$ for a literal $", where, s, v)
		}
		return def
	})
}

func expandedEnv(t *testing.T, name string, s service) map[string]string {
	t.Helper()
	env := make(map[string]string, len(s.Environment))
	for k, v := range s.Environment {
		env[k] = expand(t, name+" environment "+k, v)
	}
	return env
}

func servicesBuiltFrom(c composeFile, target string) []string {
	var names []string
	for name, s := range c.Services {
		if s.target() == target {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// flagValue returns the value that follows -name in a command.
func flagValue(command []string, name string) string {
	if i := slices.Index(command, "-"+name); i >= 0 && i+1 < len(command) {
		return command[i+1]
	}
	return ""
}

func keys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

func getenvFrom(env map[string]string) func(string) string {
	return func(name string) string { return env[name] }
}

// deploy/Dockerfile, as text per stage: the assertions are regular
// expressions on a stage's instructions, continuation lines joined.

type stage struct{ base, text string }

var (
	continuation = regexp.MustCompile(`\\\n\s*`)
	fromLine     = regexp.MustCompile(`(?m)^FROM (\S+) AS (\S+)$`)
)

func loadDockerfile(t *testing.T) map[string]stage {
	t.Helper()
	text := continuation.ReplaceAllString(readFile(t, dockerfilePath), " ")
	stages := map[string]stage{}
	froms := fromLine.FindAllStringSubmatchIndex(text, -1)
	for i, m := range froms {
		end := len(text)
		if i+1 < len(froms) {
			end = froms[i+1][0]
		}
		stages[text[m[4]:m[5]]] = stage{base: text[m[2]:m[3]], text: text[m[1]:end]}
	}
	if len(stages) == 0 {
		t.Fatalf("%s: no `FROM image AS name` stage", dockerfilePath)
	}
	return stages
}

// all returns the submatches of re for each of the stage's lines it
// matches entirely.
func (s stage) all(re string) [][]string {
	return regexp.MustCompile(`(?m)^`+re+`$`).FindAllStringSubmatch(s.text, -1)
}

// last returns the argument of the stage's last instr instruction.
func (s stage) last(t *testing.T, name, instr string) string {
	t.Helper()
	all := s.all(instr + ` (.*)`)
	if len(all) == 0 {
		t.Fatalf("%s: stage %s has no %s", dockerfilePath, name, instr)
	}
	return all[len(all)-1][1]
}

func (s stage) copiesTo(path string) bool {
	return len(s.all(`COPY .* `+regexp.QuoteMeta(path))) > 0
}

// execForm decodes a JSON-form (exec form) ENTRYPOINT or CMD; nil if the
// instruction uses the shell form.
func execForm(args string) (program []string) {
	_ = json.Unmarshal([]byte(args), &program)
	return program
}

// Images.

// pinned accepts an image pinned to an exact version tag (x.y.z, with an
// optional variant such as -alpine) or to a digest. Distroless publishes no
// versioned tags, only nonroot; a production build pins it by digest.
var pinned = regexp.MustCompile(`(:v?\d+\.\d+\.\d+([-.+][\w.-]+)?|@sha256:[0-9a-f]{64}|^gcr\.io/distroless/[\w-]+:nonroot)$`)

func TestPinnedPattern(t *testing.T) {
	for ref, want := range map[string]bool{
		"nats:2.15.0-alpine": true, "golang:1.26.8": true, "registry.example:5000/team/app:v1.2.3": true,
		"gcr.io/distroless/static-debian12:nonroot": true, "alpine@sha256:" + strings.Repeat("ab", 32): true,
		"nats": false, "nats:latest": false, "nats:2.15": false, "nats:2-alpine": false, "golang:${GO_VERSION}": false,
		"registry.example:5000/team/app": false, "gcr.io/distroless/static-debian12:latest": false,
	} {
		if got := pinned.MatchString(ref); got != want {
			t.Errorf("pinned(%q) = %v, want %v", ref, got, want)
		}
	}
}

func TestImagesArePinned(t *testing.T) {
	c := loadCompose(t)
	stages := loadDockerfile(t)
	for name, s := range c.Services {
		_, staged := stages[s.target()]
		switch {
		case s.Build != nil && (s.Build.Dockerfile != "deploy/Dockerfile" || !staged):
			t.Errorf("service %s: builds %s target %q, want a stage of deploy/%s", name, s.Build.Dockerfile, s.Build.Target, dockerfilePath)
		case s.Build == nil && !pinned.MatchString(expand(t, name+" image", s.Image)):
			t.Errorf("service %s: image %q is not pinned to an exact version (x.y.z) or a digest", name, s.Image)
		}
	}
	for name, st := range stages {
		if _, built := stages[st.base]; !built && !pinned.MatchString(st.base) {
			t.Errorf("%s: stage %s: FROM %s is not pinned to an exact version (x.y.z) or a digest", dockerfilePath, name, st.base)
		}
	}
	// Tests that fall back to testcontainers run the stack's Redis.
	if image := c.Services["redis"].Image; image != testinfra.RedisImage {
		t.Errorf("service redis runs %s, internal/testinfra.RedisImage is %s: keep them equal", image, testinfra.RedisImage)
	}
}

// Services, health checks, start order and ports.

func TestServicesAndStartOrder(t *testing.T) {
	c := loadCompose(t)
	stages := loadDockerfile(t)
	for _, name := range []string{"nats", "redis", "dispatcher-1", "dispatcher-2", "webhook-setup", "receiver", "otel-collector", "jaeger", "demo"} {
		if _, ok := c.Services[name]; !ok {
			t.Errorf("service %s missing from %s", name, composePath)
		}
	}
	awaited := map[string]bool{} // one-shots a long-running service waits for
	for name, s := range c.Services {
		switch s.Restart {
		case "no":
		case "unless-stopped", "always", "on-failure":
			checkHealthcheck(t, stages, name, s)
		default:
			t.Errorf("service %s: restart %q: set it explicitly, \"no\" for one-shot services, unless-stopped for the others", name, s.Restart)
		}
		for dep, d := range s.DependsOn {
			switch target := c.Services[dep]; d.Condition {
			case "service_healthy":
				if target.Healthcheck == nil {
					t.Errorf("service %s waits for %s to be healthy, but %s has no healthcheck", name, dep, dep)
				}
			case "service_completed_successfully":
				if !target.oneShot() {
					t.Errorf("service %s waits for %s to complete, but %s is long-running", name, dep, dep)
				}
				awaited[dep] = awaited[dep] || !s.oneShot()
			}
		}
	}
	// `docker compose up --wait` reports a one-shot container that exited 0
	// as a failure unless a running service waits for it to complete.
	for name, s := range c.Services {
		if s.oneShot() && len(s.Profiles) == 0 && !awaited[name] {
			t.Errorf("one-shot service %s runs on every `up`, but no long-running service depends on it with service_completed_successfully: `up --wait` would fail", name)
		}
	}
}

// checkHealthcheck checks that a long-running service has a healthcheck its
// image can run; TestPortsListenedOn checks the port it probes.
func checkHealthcheck(t *testing.T, stages map[string]stage, name string, s service) {
	t.Helper()
	if s.Healthcheck == nil || len(s.Healthcheck.Test) < 2 || s.Healthcheck.Test[0] != "CMD" {
		t.Errorf("service %s: want a healthcheck in the exec form [\"CMD\", program, args...] (the images have no shell)", name)
		return
	}
	test := s.Healthcheck.Test
	if st, ok := stages[s.target()]; ok && !st.copiesTo(test[1]) {
		t.Errorf("service %s: healthcheck runs %s, which stage %s does not COPY in", name, test[1], s.target())
	}
	if strings.HasPrefix(s.Image, "nats:") && !strings.Contains(test[len(test)-1], "js-enabled-only=true") {
		t.Errorf("service %s: healthcheck %q must ask for JetStream (?js-enabled-only=true)", name, test)
	}
}

// listenPorts returns the container ports a service listens on, derived from
// its own configuration wherever the code makes that possible.
func listenPorts(t *testing.T, c composeFile, name string) map[string]bool {
	t.Helper()
	s := c.Services[name]
	ports := map[string]bool{}
	switch target := s.target(); {
	case target == "dispatcher":
		cfg := config.Load(getenvFrom(expandedEnv(t, name, s)))
		ports[portOf(t, name+" DISPATCHER_HTTP_ADDR", cfg.HTTPAddr)] = true
	case target == "subscriber":
		ports[portOf(t, name+" -addr (the program's default is loopback only)", flagValue(s.Command, "addr"))] = true
	case target == "otel-collector":
		for _, endpoint := range loadCollector(t).endpoints() {
			ports[portOf(t, "otel-collector receiver", endpoint)] = true
		}
	case target == "jaeger":
		// Jaeger v2's all-in-one defaults: OTLP gRPC, OTLP HTTP and the UI.
		ports["4317"], ports["4318"], ports["16686"] = true, true, true
	case target == "tools":
	case strings.HasPrefix(s.Image, "nats:"):
		opts := natsOptions(t, name, s)
		ports[strconv.Itoa(cmp.Or(opts.Port, server.DEFAULT_PORT))] = true
		if opts.HTTPPort != 0 {
			ports[strconv.Itoa(opts.HTTPPort)] = true
		}
	case strings.HasPrefix(s.Image, "redis:"):
		ports[cmp.Or(flagValue(s.Command, "-port"), "6379")] = true
	default:
		t.Fatalf("service %s: listenPorts does not know it; teach the test", name)
	}
	return ports
}

func portOf(t *testing.T, what, hostport string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatalf("%s %q: %v", what, hostport, err)
	}
	return port
}

// TestPortsListenedOn checks every place that names a service's port (URLs
// in the services' environment, published ports, healthcheck probes, the
// Dockerfile's EXPOSE, the collector's exporters) against the ports that
// service listens on.
func TestPortsListenedOn(t *testing.T) {
	c := loadCompose(t)
	stages := loadDockerfile(t)
	type reference struct{ where, service, port string }
	var refs []reference
	for name, s := range c.Services {
		for k, v := range expandedEnv(t, name, s) {
			if u, err := url.Parse(v); err == nil && c.has(u.Hostname()) {
				refs = append(refs, reference{name + " " + k + "=" + v, u.Hostname(), u.Port()})
			}
		}
		for _, p := range s.Ports {
			parts := strings.Split(expand(t, name+" ports", p), ":")
			if len(parts) != 3 || parts[0] != "127.0.0.1" {
				t.Errorf("service %s: port %q: publish as 127.0.0.1:HOST:CONTAINER (development values must not reach the network)", name, p)
				continue
			}
			refs = append(refs, reference{name + " ports " + p, name, parts[2]})
		}
		if h := s.Healthcheck; h != nil && len(h.Test) > 2 && h.Test[1] != "redis-cli" { // redis-cli probes the default port
			if u, err := url.Parse(h.Test[len(h.Test)-1]); err != nil || u.Hostname() != "127.0.0.1" {
				t.Errorf("service %s: healthcheck %q: probe the container itself on 127.0.0.1", name, h.Test)
			} else {
				refs = append(refs, reference{name + " healthcheck", name, u.Port()})
			}
		}
		for _, m := range stages[s.target()].all(`EXPOSE (\S+)`) {
			refs = append(refs, reference{"EXPOSE of stage " + s.target(), name, m[1]})
		}
	}
	for e, x := range loadCollector(t).Exporters {
		if host, port, err := net.SplitHostPort(x.Endpoint); err == nil && c.has(host) {
			refs = append(refs, reference{collectorPath + " exporter " + e, host, port})
		}
	}
	if len(refs) < 20 {
		t.Fatalf("found only %d port references; the decoding of the files is broken", len(refs))
	}
	for _, r := range refs {
		if ports := listenPorts(t, c, r.service); !ports[r.port] {
			t.Errorf("%s: port %s, but %s listens on %v", r.where, r.port, r.service, keys(ports))
		}
	}
}

// The dispatchers.

func TestDispatcherEnvironment(t *testing.T) {
	c := loadCompose(t)
	names := servicesBuiltFrom(c, "dispatcher")
	if len(names) < 2 {
		t.Fatalf("dispatcher services %v: the stack runs at least two, sharing the work", names)
	}
	known := map[string]bool{}
	for _, v := range config.Variables {
		known[v.Name] = true
	}
	// The dispatchers are replicas: every dispatcher of a deployment must
	// share where the state is, the keys, and what each provisions into
	// JetStream at start. Only their instance identity differs.
	first := expandedEnv(t, names[0], c.Services[names[0]])
	for _, name := range names {
		s := c.Services[name]
		env := expandedEnv(t, name, s)
		for k := range env {
			if !known[k] && !strings.HasPrefix(k, "OTEL_") {
				t.Errorf("service %s: %s is not a variable the dispatcher reads (config.Variables) nor an OTEL_* one", name, k)
			}
		}
		all := maps.Clone(first)
		maps.Copy(all, env)
		for k := range all {
			if env[k] != first[k] && k != "OTEL_RESOURCE_ATTRIBUTES" {
				t.Errorf("service %s: %s differs from %s's: the dispatchers are replicas of one deployment", name, k, names[0])
			}
		}
		cfg := config.Load(getenvFrom(env))
		if err := cfg.Validate(); err != nil {
			t.Errorf("service %s: the dispatcher would refuse to start: %v", name, err)
		}
		switch host, _, _ := net.SplitHostPort(cfg.HTTPAddr); {
		case cfg.Embedded():
			t.Errorf("service %s: NATS_URL unset: each replica would run its own embedded NATS", name)
		case !cfg.AllowPrivateTargets:
			t.Errorf("service %s: DISPATCHER_ALLOW_PRIVATE_TARGETS must be true: the receiver is an http target on the private network", name)
		case host != "0.0.0.0":
			t.Errorf("service %s: DISPATCHER_HTTP_ADDR %q: listen on 0.0.0.0 inside the container", name, cfg.HTTPAddr)
		case !strings.HasPrefix(cfg.OTLPEndpoint, "http://otel-collector:"):
			// TestPortsListenedOn checks the port.
			t.Errorf("service %s: OTEL_EXPORTER_OTLP_ENDPOINT %q: want the otel-collector service", name, cfg.OTLPEndpoint)
		}
		grace, err := time.ParseDuration(s.StopGracePeriod)
		if want := cfg.Pipeline.ShutdownTimeout + 5*time.Second; err != nil || grace <= want {
			t.Errorf("service %s: stop_grace_period %q must exceed DISPATCHER_SHUTDOWN_TIMEOUT + 5 s (%s), or docker kills in-flight attempts", name, s.StopGracePeriod, want)
		}
	}
}

// NATS, read with nats-server's own flag parser.

func natsOptions(t *testing.T, name string, s service) *server.Options {
	t.Helper()
	fs := flag.NewFlagSet("nats-server", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	noop := func() {}
	opts, err := server.ConfigureOptions(fs, s.Command, noop, noop, noop)
	if err != nil {
		t.Fatalf("service %s: nats-server would refuse its command %q: %v", name, s.Command, err)
	}
	return opts
}

// TestNATSNodes checks every NATS service as nats-server reads its command
// line: JetStream stored on a named volume of its own, a monitoring port
// for the healthcheck, a supported version; the cluster profile's nodes
// form one cluster with distinct names, each routing to all three; and the
// dispatchers accept the NATS_URL and replicas the file's comment tells
// operators to set for the cluster.
func TestNATSNodes(t *testing.T) {
	c := loadCompose(t)
	cluster := []string{"nats-1", "nats-2", "nats-3"}
	serverNames, volumes := map[string]bool{}, map[string]bool{}
	var clusterURLs []string
	for _, name := range append([]string{"nats"}, cluster...) {
		s := c.Services[name]
		opts := natsOptions(t, name, s)
		volume, _ := s.volumeAt(opts.StoreDir)
		if _, named := c.Volumes[volume]; !opts.JetStream || opts.StoreDir == "" || !named || volumes[volume] {
			t.Errorf("service %s: JetStream (-js) must store (-sd) on a named volume of its own, or its data dies with the container", name)
		}
		if opts.ServerName == "" || serverNames[opts.ServerName] {
			t.Errorf("service %s: server name %q empty or taken", name, opts.ServerName)
		}
		volumes[volume], serverNames[opts.ServerName] = true, true
		if opts.HTTPPort == 0 {
			t.Errorf("service %s: no monitoring port (-m): the healthcheck needs /healthz", name)
		}
		if _, tag, _ := strings.Cut(s.Image, ":"); !natsinfra.VersionAtLeast(tag, natsinfra.MinServerVersion) {
			t.Errorf("service %s: image %q is older than the dispatcher's minimum %s", name, s.Image, natsinfra.MinServerVersion)
		}
		if name == "nats" {
			continue
		}
		if !slices.Equal(s.Profiles, []string{"cluster"}) {
			t.Errorf("service %s: profiles %v, want [cluster] (the default stack runs one NATS)", name, s.Profiles)
		}
		if opts.Cluster.Name != "blazelock" || opts.Cluster.Port == 0 {
			t.Errorf("service %s: cluster name %q port %d, want blazelock and a route port", name, opts.Cluster.Name, opts.Cluster.Port)
		}
		var routes []string
		for _, r := range opts.Routes {
			routes = append(routes, r.Host)
		}
		for _, node := range cluster {
			if want := net.JoinHostPort(node, strconv.Itoa(opts.Cluster.Port)); !slices.Contains(routes, want) {
				t.Errorf("service %s: routes %v lack %s", name, routes, want)
			}
		}
		clusterURLs = append(clusterURLs, "nats://"+net.JoinHostPort(name, strconv.Itoa(cmp.Or(opts.Port, server.DEFAULT_PORT))))
	}
	natsURL := strings.Join(clusterURLs, ",")
	if text := readFile(t, composePath); !strings.Contains(text, "NATS_URL="+natsURL) || !strings.Contains(text, "DISPATCHER_NATS_REPLICAS=3") {
		t.Errorf("%s: the comment should tell operators NATS_URL=%s and DISPATCHER_NATS_REPLICAS=3", composePath, natsURL)
	}
	for _, name := range servicesBuiltFrom(c, "dispatcher") {
		s := c.Services[name]
		if !strings.HasPrefix(s.Environment["NATS_URL"], "${NATS_URL:-") || !strings.HasPrefix(s.Environment["DISPATCHER_NATS_REPLICAS"], "${DISPATCHER_NATS_REPLICAS:-") {
			t.Errorf("service %s: NATS_URL and DISPATCHER_NATS_REPLICAS must be overridable from the shell, for the cluster profile", name)
		}
		env := expandedEnv(t, name, s)
		env["NATS_URL"], env["DISPATCHER_NATS_REPLICAS"] = natsURL, "3"
		if err := config.Load(getenvFrom(env)).Validate(); err != nil {
			t.Errorf("service %s on the cluster: the dispatcher would refuse to start: %v", name, err)
		}
	}
}

// The receiver, the demo script and the secret hand-over.

// TestFlagsExist checks the flags the stack passes to the project's
// programs against the Go files that define them with the flag package
// (fs.StringVar(&v, "name", …), fs.Bool("name", …)).
func TestFlagsExist(t *testing.T) {
	var publishArgs []string
	for _, m := range regexp.MustCompile(`dispatcher publish (.*)`).FindAllStringSubmatch(readFile(t, demoPath), -1) {
		publishArgs = append(publishArgs, strings.Fields(m[1])...)
	}
	if len(publishArgs) == 0 {
		t.Fatalf("%s: no `dispatcher publish` line", demoPath)
	}
	for source, args := range map[string][]string{
		"../subscriber/main.go":    loadCompose(t).Services["receiver"].Command,
		"../dispatcher/publish.go": publishArgs,
	} {
		code := readFile(t, source)
		for _, arg := range args {
			name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
			defines := regexp.MustCompile(`\bfs\.[A-Z]\w*\((&[\w.]+, )?"` + regexp.QuoteMeta(name) + `"`)
			if strings.HasPrefix(arg, "-") && !defines.MatchString(code) {
				t.Errorf("flag %s is not defined in %s", arg, source)
			}
		}
	}
}

// TestSecretHandOver checks the path of the demo webhook's secret: the setup
// step writes it to a named volume, the receiver reads the same file from
// the same volume, read-only, as the uid that owns the directory.
func TestSecretHandOver(t *testing.T) {
	c := loadCompose(t)
	stages := loadDockerfile(t)
	setup, receiver := c.Services["webhook-setup"], c.Services["receiver"]
	secretsFile := expandedEnv(t, "webhook-setup", setup)["SECRETS_FILE"]
	if got := flagValue(receiver.Command, "secrets-file"); got != secretsFile {
		t.Fatalf("receiver reads -secrets-file %q, webhook-setup writes SECRETS_FILE %q", got, secretsFile)
	}
	dir := filepath.Dir(secretsFile)
	written, writtenRO := setup.volumeAt(dir)
	read, readRO := receiver.volumeAt(dir)
	if _, named := c.Volumes[written]; !named || written != read || writtenRO || !readRO {
		t.Errorf("secrets directory %s: webhook-setup mounts %q, receiver %q read-only=%v: want the same named volume, read-only for the receiver only", dir, written, read, readRO)
	}
	if receiver.DependsOn["webhook-setup"].Condition != "service_completed_successfully" {
		t.Error("receiver must start after webhook-setup completed: it reads the secrets file once, at start")
	}
	// A new volume takes its owner from the image's directory.
	uid, _, _ := strings.Cut(stages["subscriber"].last(t, "subscriber", "USER"), ":")
	tools := stages["tools"]
	if !strings.Contains(tools.text, "mkdir -p "+dir) || !strings.Contains(tools.text, "chown "+uid+":") {
		t.Errorf("stage tools must create %s owned by the receiver's uid %s (a new volume copies that owner)", dir, uid)
	}
	if toolsUID, _, _ := strings.Cut(tools.last(t, "tools", "USER"), ":"); toolsUID != uid {
		t.Errorf("stage tools runs as %s, the receiver as %s: the 0600 secrets file would be unreadable", toolsUID, uid)
	}
}

// TestDemoWebhookURL checks the URL the demo integration delivers to: the
// receiver's fixed address, inside the network's subnet but outside the
// range Docker hands out, on the receiver's port and webhook route, and
// acceptable to the dispatcher's URL policy.
func TestDemoWebhookURL(t *testing.T) {
	c := loadCompose(t)
	raw := expandedEnv(t, "webhook-setup", c.Services["webhook-setup"])["DEMO_WEBHOOK_URL"]
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := (target.Policy{AllowPrivate: true}).CheckURL(context.Background(), raw, nil); err != nil {
		t.Errorf("DEMO_WEBHOOK_URL %q: the management API would refuse it: %v", raw, err)
	}
	if !strings.HasPrefix(u.Path, "/webhooks/") {
		t.Errorf("DEMO_WEBHOOK_URL %q: the receiver takes webhooks under /webhooks/", raw)
	}
	if ports := listenPorts(t, c, "receiver"); !ports[u.Port()] {
		t.Errorf("DEMO_WEBHOOK_URL %q: the receiver listens on %v", raw, keys(ports))
	}
	networks := c.Services["receiver"].Networks
	if len(networks) != 1 {
		t.Fatalf("receiver: networks %v: want exactly one, with a fixed address", networks)
	}
	netName := keys(networks)[0]
	addr, err := netip.ParseAddr(networks[netName].IPv4Address)
	if err != nil || addr.String() != u.Hostname() {
		t.Fatalf("receiver ipv4_address %q: want DEMO_WEBHOOK_URL's host %s", networks[netName].IPv4Address, u.Hostname())
	}
	for _, ipam := range c.Networks[netName].IPAM.Config {
		subnet, err1 := netip.ParsePrefix(ipam.Subnet)
		dynamic, err2 := netip.ParsePrefix(ipam.IPRange)
		if err1 != nil || err2 != nil || !subnet.Contains(addr) || dynamic.Contains(addr) || !subnet.Contains(dynamic.Addr()) {
			t.Errorf("receiver address %s must be in subnet %q and outside the dynamic range %q", addr, ipam.Subnet, ipam.IPRange)
		}
	}
	for name, s := range c.Services {
		if _, ok := s.Networks[netName]; !ok {
			t.Errorf("service %s is not on the stack's network %s", name, netName)
		}
	}
}

// The Dockerfile's targets.

var goBuild = regexp.MustCompile(`go build (.*?) -o (\S+) (\./\S+)`)

func TestDockerfileTargets(t *testing.T) {
	stages := loadDockerfile(t)
	build := stages["build"]
	if !strings.Contains(build.text, "CGO_ENABLED=0") {
		t.Error("build stage: set CGO_ENABLED=0 (the runtime images have no libc)")
	}
	builtFrom := map[string]string{} // output -> package
	for _, m := range goBuild.FindAllStringSubmatch(build.text, -1) {
		builtFrom[m[2]] = m[3]
		for _, want := range []string{"-trimpath", "-s -w -X main.version="} {
			if !strings.Contains(m[1], want) {
				t.Errorf("go build %s: flags %q lack %s", m[3], m[1], want)
			}
		}
	}
	if !regexp.MustCompile(`(?m)^var version\b`).MatchString(readFile(t, "../dispatcher/run.go")) {
		t.Error("dispatcher/run.go declares no `version` variable for -X main.version")
	}
	// Each program is installed under the name of the package it is built from.
	for name, st := range stages {
		for _, m := range st.all(`COPY --from=build (\S+) (\S+)`) {
			if pkg, ok := builtFrom[m[1]]; !ok || filepath.Base(pkg) != filepath.Base(m[2]) {
				t.Errorf("stage %s installs %s as %s; the build stage builds %v", name, m[1], m[2], builtFrom)
			}
		}
	}
	tests := []struct{ stage, entrypoint string }{
		{"dispatcher", "/usr/local/bin/dispatcher"},
		{"subscriber", "/usr/local/bin/subscriber"},
		{"tools", "/usr/local/bin/demo.sh"},
	}
	for _, tt := range tests {
		st := stages[tt.stage]
		if user := st.last(t, tt.stage, "USER"); user == "root" || strings.HasPrefix(user, "0") {
			t.Errorf("stage %s runs as %s", tt.stage, user)
		}
		entry := execForm(st.last(t, tt.stage, "ENTRYPOINT"))
		if !slices.Equal(entry, []string{tt.entrypoint}) || !st.copiesTo(tt.entrypoint) {
			t.Errorf("stage %s: ENTRYPOINT %q, want [%q], copied in", tt.stage, entry, tt.entrypoint)
		}
	}
	if !stages["tools"].copiesTo("/usr/local/bin/dispatcher") {
		t.Error("stage tools: demo.sh runs `dispatcher publish`; copy the dispatcher onto the PATH")
	}
	// The collector runs the configuration this directory holds.
	col := stages["otel-collector"]
	cmdArgs := execForm(col.last(t, "otel-collector", "CMD"))
	copied := col.all(`COPY deploy/` + regexp.QuoteMeta(collectorPath) + ` (\S+)`)
	if len(copied) != 1 || !slices.Equal(cmdArgs, []string{"--config", copied[0][1]}) {
		t.Errorf("stage otel-collector: CMD %q must load deploy/%s, copied to that path", cmdArgs, collectorPath)
	}
}

// The collector configuration.

type collectorConfig struct {
	Receivers map[string]struct {
		Protocols map[string]struct {
			Endpoint string `yaml:"endpoint"`
		} `yaml:"protocols"`
	} `yaml:"receivers"`
	Exporters map[string]struct {
		Endpoint string `yaml:"endpoint"`
	} `yaml:"exporters"`
	Service struct {
		// Pipelines maps a signal to its receivers, processors and exporters.
		Pipelines map[string]map[string][]string `yaml:"pipelines"`
	} `yaml:"service"`
}

func loadCollector(t *testing.T) collectorConfig {
	t.Helper()
	var cfg collectorConfig
	if err := yaml.Unmarshal([]byte(readFile(t, collectorPath)), &cfg); err != nil {
		t.Fatalf("%s: %v", collectorPath, err)
	}
	return cfg
}

// endpoints returns the collector's listen addresses by receiver/protocol.
func (cfg collectorConfig) endpoints() map[string]string {
	out := map[string]string{}
	for name, r := range cfg.Receivers {
		for proto, p := range r.Protocols {
			out[name+"/"+proto] = p.Endpoint
		}
	}
	return out
}

func TestCollectorConfig(t *testing.T) {
	cfg := loadCollector(t)
	for proto, endpoint := range cfg.endpoints() {
		if host, _, err := net.SplitHostPort(endpoint); err != nil || host != "0.0.0.0" {
			t.Errorf("receiver %s endpoint %q: listen on 0.0.0.0 so the dispatchers reach it", proto, endpoint)
		}
	}
	for _, signal := range []string{"traces", "metrics"} {
		if p := cfg.Service.Pipelines[signal]; len(p["receivers"]) == 0 || len(p["exporters"]) == 0 {
			t.Errorf("no %s pipeline with receivers and exporters: the dispatcher exports %s over OTLP and would log export errors", signal, signal)
		}
	}
	toJaeger := func(exporter string) bool { return strings.HasPrefix(cfg.Exporters[exporter].Endpoint, "jaeger:") }
	if !slices.ContainsFunc(cfg.Service.Pipelines["traces"]["exporters"], toJaeger) {
		t.Error("the traces pipeline exports nothing to the jaeger service")
	}
}

// Taskfile.yml and README.md.

func TestTaskfile(t *testing.T) {
	var tf struct {
		Tasks map[string]struct {
			Cmds []any `yaml:"cmds"`
		} `yaml:"tasks"`
	}
	if err := yaml.Unmarshal([]byte(readFile(t, taskfilePath)), &tf); err != nil {
		t.Fatalf("%s: %v", taskfilePath, err)
	}
	tests := []struct{ task, command string }{
		{"test", `^go test .*\./\.\.\.$`},
		{"up", `^docker compose up .*--wait`},
		{"demo", `^docker compose run .* demo$`},
	}
	for _, tt := range tests {
		task, ok := tf.Tasks[tt.task]
		if !ok || len(task.Cmds) == 0 || !regexp.MustCompile(tt.command).MatchString(fmt.Sprint(task.Cmds[0])) {
			t.Errorf("task %s: commands %q, want the first to match %s", tt.task, task.Cmds, tt.command)
		}
	}
}

// TestConfigTable checks that README.md's configuration table is
// config.Variables: same names, order, defaults and meanings.
func TestConfigTable(t *testing.T) {
	want := []string{"| variable | default | meaning |", "|---|---|---|"}
	cell := strings.NewReplacer("|", `\|`)
	for _, v := range config.Variables {
		want = append(want, "| `"+v.Name+"` | "+cell.Replace(v.Default)+" | "+cell.Replace(v.Meaning)+" |")
	}
	want = append(want, "") // the table ends there
	readme := readFile(t, readmePath)
	start := strings.Index(readme, want[0])
	if start < 0 {
		t.Fatalf("%s: no table with the header %s", readmePath, want[0])
	}
	got := strings.SplitN(readme[start:], "\n", len(want)+1)
	for i := range want {
		if i >= len(got) || got[i] != want[i] {
			t.Fatalf("%s: configuration table line %d\n got  %q\n want %q (config.Variables)", readmePath, i+1, got[min(i, len(got)-1)], want[i])
		}
	}
}
