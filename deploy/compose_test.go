package deploy

// These tests check the local stack's files against the code they run, with
// no Docker engine: docker-compose.yml, deploy/Dockerfile, deploy/demo.sh,
// deploy/otel-collector.yaml, Taskfile.yml and the configuration table of
// README.md. What they cannot check (images pulling, containers
// starting, the collector accepting its configuration) needs `docker compose
// up`; see README.md.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
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
	operationsPath = "../README.md"
	dockerfilePath = "Dockerfile"
	collectorPath  = "otel-collector.yaml"
	demoPath       = "demo.sh"

	// healthcheckBinary is where deploy/Dockerfile puts the probe program.
	healthcheckBinary = "/usr/local/bin/healthcheck"
)

// requiredServices are the services the brief of the stack names.
var requiredServices = []string{
	"nats", "redis", "dispatcher-1", "dispatcher-2", "webhook-setup", "receiver",
	"otel-collector", "jaeger", "demo",
}

// ---------------------------------------------------------------------------
// docker-compose.yml model. Decoding is strict (unknown keys fail), so a
// misspelt key (healtcheck, depend_on) fails here instead of being ignored.

type composeFile struct {
	Name       string                    `yaml:"name"`
	Services   map[string]service        `yaml:"services"`
	Networks   map[string]composeNetwork `yaml:"networks"`
	Volumes    map[string]any            `yaml:"volumes"`
	Extensions map[string]any            `yaml:",inline"` // x-* anchors
}

type composeNetwork struct {
	Internal bool `yaml:"internal"`
	IPAM     struct {
		Config []struct {
			Subnet  string `yaml:"subnet"`
			IPRange string `yaml:"ip_range"`
		} `yaml:"config"`
	} `yaml:"ipam"`
}

type service struct {
	Image           string                `yaml:"image"`
	Build           *buildSpec            `yaml:"build"`
	Command         []string              `yaml:"command"`
	Environment     map[string]string     `yaml:"environment"`
	DependsOn       map[string]dependency `yaml:"depends_on"`
	Healthcheck     *healthcheck          `yaml:"healthcheck"`
	Restart         string                `yaml:"restart"`
	Profiles        []string              `yaml:"profiles"`
	Ports           []string              `yaml:"ports"`
	Volumes         []string              `yaml:"volumes"`
	Networks        serviceNetworks       `yaml:"networks"`
	StopGracePeriod string                `yaml:"stop_grace_period"`
}

type buildSpec struct {
	Context    string            `yaml:"context"`
	Dockerfile string            `yaml:"dockerfile"`
	Target     string            `yaml:"target"`
	Args       map[string]string `yaml:"args"`
}

type dependency struct {
	Condition string `yaml:"condition"`
}

type healthcheck struct {
	Test        []string `yaml:"test"`
	Interval    string   `yaml:"interval"`
	Timeout     string   `yaml:"timeout"`
	Retries     int      `yaml:"retries"`
	StartPeriod string   `yaml:"start_period"`
}

// serviceNetworks accepts both compose forms: a list of names, or a map of
// name to attachment settings.
type serviceNetworks map[string]networkAttachment

type networkAttachment struct {
	IPv4Address string `yaml:"ipv4_address"`
}

func (n *serviceNetworks) UnmarshalYAML(v *yaml.Node) error {
	*n = serviceNetworks{}
	switch v.Kind {
	case yaml.SequenceNode:
		var names []string
		if err := v.Decode(&names); err != nil {
			return err
		}
		for _, name := range names {
			(*n)[name] = networkAttachment{}
		}
		return nil
	case yaml.MappingNode:
		m := map[string]*networkAttachment{}
		if err := v.Decode(&m); err != nil {
			return err
		}
		for name, a := range m {
			if a == nil {
				a = &networkAttachment{}
			}
			(*n)[name] = *a
		}
		return nil
	}
	return fmt.Errorf("line %d: networks must be a list or a map", v.Line)
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	var c composeFile
	decodeStrict(t, composePath, &c)
	if len(c.Services) == 0 {
		t.Fatalf("%s: no services", composePath)
	}
	return c
}

func decodeStrict(t *testing.T, path string, v any) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// expand applies compose interpolation ($$, $VAR, ${VAR}, ${VAR:-default},
// ${VAR-default}, ${VAR:?message}) with an empty environment: the file's own
// defaults are what the stack runs with, so they are what gets checked. A
// variable without a default is an error: the stack must not depend on the
// caller's shell.
func expand(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c != '$':
			b.WriteByte(c)
		case i+1 < len(s) && s[i+1] == '$':
			b.WriteByte('$')
			i++
		case i+1 < len(s) && s[i+1] == '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return "", fmt.Errorf("%q: unclosed ${", s)
			}
			expr := s[i+2 : i+end]
			i += end
			name, op, def := expr, "", ""
			if j := strings.IndexAny(expr, ":-?"); j >= 0 {
				n := 1
				if expr[j] == ':' {
					n = 2
				}
				if j+n > len(expr) {
					return "", fmt.Errorf("%q: malformed ${%s}", s, expr)
				}
				name, op, def = expr[:j], expr[j:j+n], expr[j+n:]
			}
			switch {
			case strings.Contains(def, "$"):
				return "", fmt.Errorf("%q: nested interpolation is not supported by this check", s)
			case op == ":-" || op == "-":
				b.WriteString(def)
			case op == ":?" || op == "?":
				return "", fmt.Errorf("%q: %s is required (%s)", s, name, def)
			default:
				return "", fmt.Errorf("%q: ${%s} has no default", s, expr)
			}
		default:
			return "", fmt.Errorf("%q: write $$ for a literal $, ${VAR:-default} for a variable", s)
		}
	}
	return b.String(), nil
}

func mustExpand(t *testing.T, where, s string) string {
	t.Helper()
	v, err := expand(s)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	return v
}

func expandedEnv(t *testing.T, name string, s service) map[string]string {
	t.Helper()
	env := make(map[string]string, len(s.Environment))
	for k, v := range s.Environment {
		env[k] = mustExpand(t, name+" environment "+k, v)
	}
	return env
}

func isOneShot(s service) bool { return s.Restart == "no" }

// builtFrom returns the Dockerfile target of a service built by this repo.
func builtFrom(s service) string {
	if s.Build == nil {
		return ""
	}
	return s.Build.Target
}

// servicesBuiltFrom lists, sorted, the services built from a target.
func servicesBuiltFrom(c composeFile, target string) []string {
	var names []string
	for name, s := range c.Services {
		if builtFrom(s) == target {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// ---------------------------------------------------------------------------
// deploy/Dockerfile model.

type stage struct {
	Name, Base   string
	Instructions []instruction
}

type instruction struct {
	Cmd, Args string
	Line      int
}

func parseDockerfile(t *testing.T) map[string]*stage {
	t.Helper()
	f, err := os.Open(dockerfilePath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stages := map[string]*stage{}
	var cur *stage
	var logical strings.Builder
	start := 0
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && logical.Len() == 0) {
			continue
		}
		if logical.Len() == 0 {
			start = n
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			logical.WriteString(cont + " ")
			continue
		}
		logical.WriteString(line)
		text := logical.String()
		logical.Reset()
		cmd, args, _ := strings.Cut(text, " ")
		in := instruction{Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args), Line: start}
		if in.Cmd == "FROM" {
			fields := strings.Fields(in.Args)
			cur = &stage{Base: fields[0]}
			if len(fields) != 3 || !strings.EqualFold(fields[1], "AS") {
				t.Fatalf("%s:%d: write FROM <image> AS <name>", dockerfilePath, start)
			}
			cur.Name = fields[2]
			if stages[cur.Name] != nil {
				t.Fatalf("%s:%d: stage %s defined twice", dockerfilePath, start, cur.Name)
			}
			stages[cur.Name] = cur
			continue
		}
		if cur == nil {
			t.Fatalf("%s:%d: %s before the first FROM", dockerfilePath, start, in.Cmd)
		}
		cur.Instructions = append(cur.Instructions, in)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(stages) == 0 {
		t.Fatalf("%s: no stages", dockerfilePath)
	}
	return stages
}

func (s *stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range s.Instructions {
		if in.Cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// last returns the stage's last instruction cmd, or fails.
func (s *stage) last(t *testing.T, cmd string) instruction {
	t.Helper()
	all := s.all(cmd)
	if len(all) == 0 {
		t.Fatalf("%s: stage %s has no %s", dockerfilePath, s.Name, cmd)
	}
	return all[len(all)-1]
}

type copyInstr struct {
	From, Dest string
	Srcs       []string
}

// copies returns the stage's COPY instructions (shell form only).
func (s *stage) copies() []copyInstr {
	var out []copyInstr
	for _, in := range s.all("COPY") {
		var c copyInstr
		var rest []string
		for _, f := range strings.Fields(in.Args) {
			if v, ok := strings.CutPrefix(f, "--from="); ok {
				c.From = v
			} else if !strings.HasPrefix(f, "--") {
				rest = append(rest, f)
			}
		}
		if len(rest) >= 2 {
			c.Srcs, c.Dest = rest[:len(rest)-1], rest[len(rest)-1]
		}
		out = append(out, c)
	}
	return out
}

// copiedTo returns the COPY that writes dest in the stage, if any.
func (s *stage) copiedTo(dest string) (copyInstr, bool) {
	for _, c := range s.copies() {
		if c.Dest == dest {
			return c, true
		}
	}
	return copyInstr{}, false
}

func jsonArgs(t *testing.T, in instruction) []string {
	t.Helper()
	var args []string
	if err := json.Unmarshal([]byte(in.Args), &args); err != nil {
		t.Fatalf("%s:%d: %s must use the JSON (exec) form: %v", dockerfilePath, in.Line, in.Cmd, err)
	}
	return args
}

type goBuild struct {
	Out, Pkg, Ldflags string
	Trimpath          bool
}

// goBuilds extracts the `go build` commands of a stage's RUN instructions.
func (s *stage) goBuilds() []goBuild {
	var out []goBuild
	for _, in := range s.all("RUN") {
		for part := range strings.SplitSeq(in.Args, "&&") {
			words := shellWords(part)
			i := slices.Index(words, "go")
			if i < 0 || i+1 >= len(words) || words[i+1] != "build" {
				continue
			}
			var b goBuild
			args := words[i+2:]
			for j := 0; j < len(args); j++ {
				switch a := args[j]; {
				case a == "-o" && j+1 < len(args):
					b.Out = args[j+1]
					j++
				case a == "-ldflags" && j+1 < len(args):
					b.Ldflags = args[j+1]
					j++
				case strings.HasPrefix(a, "-ldflags="):
					b.Ldflags = strings.TrimPrefix(a, "-ldflags=")
				case a == "-trimpath":
					b.Trimpath = true
				case !strings.HasPrefix(a, "-"):
					b.Pkg = a
				}
			}
			out = append(out, b)
		}
	}
	return out
}

// shellWords splits on blanks, keeping double-quoted words together.
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted, inWord = !quoted, true
		case (r == ' ' || r == '\t') && !quoted:
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// ---------------------------------------------------------------------------
// Image pins.

var (
	versionTag = regexp.MustCompile(`^v?[0-9]+\.[0-9]+\.[0-9]+([-.+][0-9A-Za-z.-]+)?$`)
	digestRef  = regexp.MustCompile(`@sha256:[0-9a-f]{64}$`)
)

// checkPinned accepts an image reference pinned to an exact version tag
// (x.y.z, optionally with a variant suffix such as -alpine) or to a digest.
// The one exception is distroless, which publishes no versioned tags at all.
func checkPinned(ref string) error {
	if digestRef.MatchString(ref) {
		return nil
	}
	repo, tag := ref, ""
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		repo, tag = ref[:i], ref[i+1:]
	}
	switch {
	case tag == "":
		return fmt.Errorf("image %q has no tag: that means latest", ref)
	case versionTag.MatchString(tag):
		return nil
	case strings.HasPrefix(repo, "gcr.io/distroless/") && tag == "nonroot":
		return nil // no versioned tags exist; a production build pins the digest
	}
	return fmt.Errorf("image %q is not pinned to an exact version (x.y.z) or a digest", ref)
}

func TestCheckPinned(t *testing.T) {
	tests := []struct {
		ref string
		ok  bool
	}{
		{"nats:2.15.0-alpine", true},
		{"redis:7.4.2-alpine", true},
		{"golang:1.26.8", true},
		{"jaegertracing/jaeger:2.19.0", true},
		{"registry.example:5000/team/app:v1.2.3", true},
		{"gcr.io/distroless/static-debian12:nonroot", true},
		{"alpine@sha256:" + strings.Repeat("ab", 32), true},
		{"nats", false},
		{"nats:latest", false},
		{"nats:2", false},
		{"nats:2.15", false},
		{"nats:2-alpine", false},
		{"nats:alpine", false},
		{"registry.example:5000/team/app", false},
		{"gcr.io/distroless/static-debian12:latest", false},
		{"alpine@sha256:abc", false},
	}
	for _, tt := range tests {
		if err := checkPinned(tt.ref); (err == nil) != tt.ok {
			t.Errorf("checkPinned(%q) = %v, want ok=%v", tt.ref, err, tt.ok)
		}
	}
}

func TestImagesArePinned(t *testing.T) {
	c := loadCompose(t)
	stages := parseDockerfile(t)
	for name, s := range c.Services {
		switch {
		case s.Build != nil && s.Image != "":
			t.Errorf("service %s: has both build and image; built services keep their compose-given name", name)
		case s.Build != nil:
			if s.Build.Context != "." || s.Build.Dockerfile != "deploy/Dockerfile" {
				t.Errorf("service %s: build context %q dockerfile %q, want . and deploy/Dockerfile", name, s.Build.Context, s.Build.Dockerfile)
			}
			if stages[s.Build.Target] == nil {
				t.Errorf("service %s: build target %q is not a stage of %s", name, s.Build.Target, dockerfilePath)
			}
		case s.Image != "":
			if err := checkPinned(mustExpand(t, name+" image", s.Image)); err != nil {
				t.Errorf("service %s: %v", name, err)
			}
		default:
			t.Errorf("service %s: neither image nor build", name)
		}
	}
	for _, st := range stages {
		if stages[st.Base] != nil {
			continue // built on another stage
		}
		if strings.Contains(st.Base, "$") {
			t.Errorf("%s: stage %s: FROM %s: no build arguments in base images (they hide what runs)", dockerfilePath, st.Name, st.Base)
			continue
		}
		if err := checkPinned(st.Base); err != nil {
			t.Errorf("%s: stage %s: %v", dockerfilePath, st.Name, err)
		}
	}
}

func TestServicesPresent(t *testing.T) {
	c := loadCompose(t)
	for _, name := range requiredServices {
		if _, ok := c.Services[name]; !ok {
			t.Errorf("service %s missing from %s", name, composePath)
		}
	}
	for key := range c.Extensions {
		if !strings.HasPrefix(key, "x-") {
			t.Errorf("%s: unknown top-level key %q", composePath, key)
		}
	}
	if c.Name == "" {
		t.Errorf("%s: set a project name, so volume and network names do not depend on the directory", composePath)
	}
}

// ---------------------------------------------------------------------------
// Health checks and start order.

func TestHealthchecksAndDependencies(t *testing.T) {
	c := loadCompose(t)
	stages := parseDockerfile(t)
	adopted := map[string]bool{} // one-shots a long-running service waits for
	for name, s := range c.Services {
		switch s.Restart {
		case "no":
			if s.Healthcheck != nil {
				t.Errorf("service %s: a one-shot service needs no healthcheck", name)
			}
		case "unless-stopped", "always", "on-failure":
			if s.Healthcheck == nil {
				t.Errorf("service %s: long-running service without a healthcheck", name)
				break
			}
			checkHealthcheck(t, c, stages, name, s)
		default:
			t.Errorf("service %s: restart %q: set it explicitly, \"no\" for one-shot services, unless-stopped for the others", name, s.Restart)
		}
		for dep, d := range s.DependsOn {
			target, ok := c.Services[dep]
			if !ok {
				t.Errorf("service %s depends on unknown service %s", name, dep)
				continue
			}
			switch d.Condition {
			case "service_healthy":
				if target.Healthcheck == nil {
					t.Errorf("service %s waits for %s to be healthy, but %s has no healthcheck", name, dep, dep)
				}
			case "service_completed_successfully":
				if !isOneShot(target) {
					t.Errorf("service %s waits for %s to complete, but %s is long-running", name, dep, dep)
				}
				if !isOneShot(s) {
					adopted[dep] = true
				}
			case "service_started":
			default:
				t.Errorf("service %s: depends_on %s: condition %q: use service_healthy, service_completed_successfully or service_started", name, dep, d.Condition)
			}
			if len(s.Profiles) == 0 && len(target.Profiles) > 0 {
				t.Errorf("service %s (no profile) depends on %s, which only runs in profiles %v", name, dep, target.Profiles)
			}
		}
	}
	// `docker compose up --wait` reports a one-shot container that exited 0
	// as a failure unless a running service waits for it to complete.
	for name, s := range c.Services {
		if isOneShot(s) && len(s.Profiles) == 0 && !adopted[name] {
			t.Errorf("one-shot service %s runs on every `up`, but no long-running service depends on it with service_completed_successfully: `up --wait` would fail", name)
		}
	}
}

func checkHealthcheck(t *testing.T, c composeFile, stages map[string]*stage, name string, s service) {
	t.Helper()
	h := s.Healthcheck
	if len(h.Test) < 2 || h.Test[0] != "CMD" {
		t.Errorf("service %s: healthcheck test %q: use the exec form [\"CMD\", program, args...] (the images have no shell)", name, h.Test)
		return
	}
	for field, v := range map[string]string{"interval": h.Interval, "timeout": h.Timeout} {
		if d, err := time.ParseDuration(v); err != nil || d <= 0 {
			t.Errorf("service %s: healthcheck %s %q: want a duration", name, field, v)
		}
	}
	if h.Retries <= 0 {
		t.Errorf("service %s: healthcheck retries must be positive", name)
	}
	if target := builtFrom(s); target != "" {
		st := stages[target]
		if st == nil {
			return // reported by TestImagesArePinned
		}
		if _, ok := st.copiedTo(h.Test[1]); !ok {
			t.Errorf("service %s: healthcheck runs %s, which stage %s does not COPY in", name, h.Test[1], target)
		}
	}
	var probe string
	switch h.Test[1] {
	case healthcheckBinary:
		if len(h.Test) != 3 {
			t.Errorf("service %s: %s takes exactly one target, got %q", name, healthcheckBinary, h.Test[2:])
			return
		}
		probe = h.Test[2]
	case "wget":
		probe = h.Test[len(h.Test)-1]
	case "redis-cli":
		return // its default is the server's own default port, 6379
	default:
		t.Errorf("service %s: healthcheck program %s is not one this test knows how to check", name, h.Test[1])
		return
	}
	u, err := url.Parse(probe)
	if err != nil {
		t.Errorf("service %s: healthcheck target %q: %v", name, probe, err)
		return
	}
	if u.Hostname() != "127.0.0.1" {
		t.Errorf("service %s: healthcheck target %q: probe the container itself on 127.0.0.1", name, probe)
	}
	if ports := listenPorts(t, c, name); !ports[u.Port()] {
		t.Errorf("service %s: healthcheck probes port %s, but the service listens on %v", name, u.Port(), keys(ports))
	}
	if name == "nats" && u.Query().Get("js-enabled-only") != "true" {
		t.Errorf("service nats: healthcheck %q must ask for JetStream (?js-enabled-only=true)", probe)
	}
}

// listenPorts returns the container ports a service listens on, derived from
// its own configuration wherever the code makes that possible.
func listenPorts(t *testing.T, c composeFile, name string) map[string]bool {
	t.Helper()
	s := c.Services[name]
	ports := map[string]bool{}
	switch target := builtFrom(s); {
	case target == "dispatcher":
		cfg := config.Load(mapGetenv(expandedEnv(t, name, s)))
		ports[portOf(t, name+" DISPATCHER_HTTP_ADDR", cfg.HTTPAddr)] = true
	case target == "subscriber":
		addr, ok := flagValue(s.Command, "addr")
		if !ok {
			t.Fatalf("service %s: set -addr in its command (the program's default is loopback only)", name)
		}
		ports[portOf(t, name+" -addr", addr)] = true
	case target == "otel-collector":
		for _, endpoint := range collectorReceiverEndpoints(t) {
			ports[portOf(t, "otel-collector receiver", endpoint)] = true
		}
	case target == "jaeger":
		// Jaeger v2's all-in-one defaults (its image EXPOSEs them): OTLP gRPC,
		// OTLP HTTP and the UI.
		ports["4317"], ports["4318"], ports["16686"] = true, true, true
	case target == "tools":
	case strings.HasPrefix(s.Image, "nats:"):
		opts := natsOptions(t, s)
		if opts.Port == 0 {
			opts.Port = server.DEFAULT_PORT
		}
		ports[strconv.Itoa(opts.Port)] = true
		if opts.HTTPPort != 0 {
			ports[strconv.Itoa(opts.HTTPPort)] = true
		}
	case strings.HasPrefix(s.Image, "redis:"):
		port := "6379"
		if i := slices.Index(s.Command, "--port"); i >= 0 && i+1 < len(s.Command) {
			port = s.Command[i+1]
		}
		ports[port] = true
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

func keys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

func mapGetenv(env map[string]string) func(string) string {
	return func(name string) string { return env[name] }
}

// TestURLsPointAtListeningPorts checks every URL-valued environment variable
// that names a compose service: the port must be one that service listens on.
func TestURLsPointAtListeningPorts(t *testing.T) {
	c := loadCompose(t)
	checked := 0
	for name, s := range c.Services {
		for k, v := range expandedEnv(t, name, s) {
			u, err := url.Parse(v)
			if err != nil || u.Host == "" {
				continue
			}
			if _, ok := c.Services[u.Hostname()]; !ok {
				continue
			}
			checked++
			if ports := listenPorts(t, c, u.Hostname()); !ports[u.Port()] {
				t.Errorf("service %s: %s=%s: %s listens on %v", name, k, v, u.Hostname(), keys(ports))
			}
		}
	}
	if checked < 5 {
		t.Fatalf("checked only %d service URLs; the environment parsing is broken", checked)
	}
}

func TestPublishedPorts(t *testing.T) {
	c := loadCompose(t)
	hostPorts := map[string]string{}
	for name, s := range c.Services {
		for _, p := range s.Ports {
			p = mustExpand(t, name+" ports", p)
			parts := strings.Split(p, ":")
			if len(parts) != 3 || parts[0] != "127.0.0.1" {
				t.Errorf("service %s: port %q: publish as 127.0.0.1:HOST:CONTAINER (development values must not reach the network)", name, p)
				continue
			}
			if other, dup := hostPorts[parts[1]]; dup {
				t.Errorf("host port %s published by both %s and %s", parts[1], other, name)
			}
			hostPorts[parts[1]] = name
			if ports := listenPorts(t, c, name); !ports[parts[2]] {
				t.Errorf("service %s: publishes container port %s, but listens on %v", name, parts[2], keys(ports))
			}
		}
	}
	for _, want := range []string{"dispatcher-1", "dispatcher-2", "receiver", "jaeger"} {
		if !slices.Contains(slices.Collect(maps.Values(hostPorts)), want) {
			t.Errorf("service %s publishes no port; it is one the walk-through uses", want)
		}
	}
}

// ---------------------------------------------------------------------------
// The dispatcher services.

func TestDispatcherEnvironment(t *testing.T) {
	c := loadCompose(t)
	names := servicesBuiltFrom(c, "dispatcher")
	if len(names) < 2 {
		t.Fatalf("dispatcher services %v: the stack runs at least two, sharing the work", names)
	}
	known := map[string]bool{}
	var requiredWithNATS []string
	for _, v := range config.Variables {
		known[v.Name] = true
		if strings.HasPrefix(v.Default, "required with NATS_URL") {
			requiredWithNATS = append(requiredWithNATS, v.Name)
		}
	}
	if len(requiredWithNATS) == 0 {
		t.Fatal("config.Variables marks no variable as required with NATS_URL; this test's reading of it is stale")
	}
	// Settings every dispatcher of a deployment must agree on: where the
	// shared state is, the keys, and what each process provisions into
	// JetStream at start (create-or-update: the last process to start wins).
	shared := []string{
		"NATS_URL", "REDIS_URL", "DISPATCHER_REDIS_PREFIX", "DISPATCHER_ADMIN_TOKEN", "DISPATCHER_SECRET_KEY",
		"DISPATCHER_RETRY_SCHEDULE", "DISPATCHER_ATTEMPT_TIMEOUT", "DISPATCHER_EVENT_RETENTION",
		"DISPATCHER_DUPLICATE_WINDOW", "DISPATCHER_NATS_REPLICAS", "DISPATCHER_NATS_STORAGE", "DISPATCHER_MAX_EVENT_BYTES",
	}
	first := map[string]string(nil)
	for _, name := range names {
		s := c.Services[name]
		env := expandedEnv(t, name, s)
		for k := range env {
			if !known[k] && !strings.HasPrefix(k, "OTEL_") {
				t.Errorf("service %s: %s is not a variable the dispatcher reads (config.Variables) nor an OTEL_* one", name, k)
			}
		}
		cfg := config.Load(mapGetenv(env))
		if err := cfg.Validate(); err != nil {
			t.Errorf("service %s: the dispatcher would refuse to start: %v", name, err)
		}
		if cfg.Embedded() {
			t.Errorf("service %s: NATS_URL unset: each replica would run its own embedded NATS", name)
		}
		for _, v := range requiredWithNATS {
			if env[v] == "" {
				t.Errorf("service %s: %s is required with NATS_URL", name, v)
			}
		}
		if cfg.RedisURL == "" {
			t.Errorf("service %s: set REDIS_URL: the stack demonstrates the Redis cache", name)
		}
		if !cfg.AllowPrivateTargets {
			t.Errorf("service %s: DISPATCHER_ALLOW_PRIVATE_TARGETS must be true: the receiver is an http target on the private network", name)
		}
		if host, _, _ := net.SplitHostPort(cfg.HTTPAddr); host != "0.0.0.0" {
			t.Errorf("service %s: DISPATCHER_HTTP_ADDR %q: listen on 0.0.0.0 inside the container", name, cfg.HTTPAddr)
		}
		if u, err := url.Parse(cfg.OTLPEndpoint); err != nil || u.Hostname() != "otel-collector" {
			t.Errorf("service %s: OTEL_EXPORTER_OTLP_ENDPOINT %q: want the otel-collector service", name, cfg.OTLPEndpoint)
		} else if want := collectorHTTPPort(t); u.Port() != want {
			t.Errorf("service %s: OTEL_EXPORTER_OTLP_ENDPOINT %q: the exporter speaks OTLP/HTTP, the collector's http receiver is on %s", name, cfg.OTLPEndpoint, want)
		}
		grace, err := time.ParseDuration(s.StopGracePeriod)
		if want := cfg.Pipeline.ShutdownTimeout + 5*time.Second; err != nil || grace <= want {
			t.Errorf("service %s: stop_grace_period %q must exceed DISPATCHER_SHUTDOWN_TIMEOUT + 5 s (%s), or docker kills in-flight attempts", name, s.StopGracePeriod, want)
		}
		if first == nil {
			first = env
			continue
		}
		for _, k := range shared {
			if env[k] != first[k] {
				t.Errorf("service %s: %s differs from %s's: every dispatcher of a deployment must share it", name, k, names[0])
			}
		}
	}
}

// ---------------------------------------------------------------------------
// NATS.

func natsOptions(t *testing.T, s service) *server.Options {
	t.Helper()
	fs := flag.NewFlagSet("nats-server", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	noop := func() {}
	opts, err := server.ConfigureOptions(fs, s.Command, noop, noop, noop)
	if err != nil {
		t.Fatalf("service nats: nats-server would refuse its command %q: %v", s.Command, err)
	}
	return opts
}

func TestNATSService(t *testing.T) {
	c := loadCompose(t)
	s := c.Services["nats"]
	opts := natsOptions(t, s)
	if !opts.JetStream {
		t.Error("service nats: JetStream is not enabled (-js)")
	}
	if opts.StoreDir == "" {
		t.Fatal("service nats: no store directory (-sd)")
	}
	mounted := false
	for _, v := range s.Volumes {
		source, dest, _ := strings.Cut(v, ":")
		if dest == opts.StoreDir && c.Volumes != nil {
			if _, named := c.Volumes[source]; named {
				mounted = true
			}
		}
	}
	if !mounted {
		t.Errorf("service nats: store directory %s is not on a named volume: JetStream data would die with the container", opts.StoreDir)
	}
	if opts.HTTPPort == 0 {
		t.Error("service nats: no monitoring port (-m): the healthcheck needs /healthz")
	}
	_, tag, _ := strings.Cut(s.Image, ":")
	version, _, _ := strings.Cut(tag, "-")
	if !versionAtLeast(version, natsinfra.MinServerVersion) {
		t.Errorf("service nats: image %s is older than the dispatcher's minimum %s", s.Image, natsinfra.MinServerVersion)
	}
}

// TestNATSClusterProfile checks the cluster profile's nodes as nats-server
// reads their command lines: one cluster of three JetStream nodes with
// distinct names, each routing to all three, each storing on a volume of
// its own; and that the dispatchers accept the NATS_URL and replicas the
// file's comment tells operators to set for it.
func TestNATSClusterProfile(t *testing.T) {
	c := loadCompose(t)
	nodes := []string{"nats-1", "nats-2", "nats-3"}
	var clientURLs []string
	names, volumes := map[string]bool{}, map[string]bool{}
	for _, name := range nodes {
		s, ok := c.Services[name]
		if !ok {
			t.Fatalf("service %s missing: the cluster profile has three nodes", name)
		}
		if !slices.Equal(s.Profiles, []string{"cluster"}) {
			t.Errorf("service %s: profiles %v, want [cluster] (the default stack runs one NATS)", name, s.Profiles)
		}
		if s.Image != c.Services["nats"].Image {
			t.Errorf("service %s: image %s, want the nats service's %s", name, s.Image, c.Services["nats"].Image)
		}
		opts := natsOptions(t, s)
		if !opts.JetStream || opts.StoreDir == "" {
			t.Errorf("service %s: JetStream with a store directory (-js -sd) needed", name)
		}
		if opts.Cluster.Name != "blazelock" || opts.Cluster.Port == 0 {
			t.Errorf("service %s: cluster name %q port %d, want blazelock and a route port", name, opts.Cluster.Name, opts.Cluster.Port)
		}
		if names[opts.ServerName] || opts.ServerName == "" {
			t.Errorf("service %s: server name %q empty or taken", name, opts.ServerName)
		}
		names[opts.ServerName] = true
		var routes []string
		for _, r := range opts.Routes {
			routes = append(routes, r.Host)
		}
		for _, n := range nodes {
			if want := net.JoinHostPort(n, strconv.Itoa(opts.Cluster.Port)); !slices.Contains(routes, want) {
				t.Errorf("service %s: routes %v lack %s", name, routes, want)
			}
		}
		for _, v := range s.Volumes {
			source, dest, _ := strings.Cut(v, ":")
			if _, named := c.Volumes[source]; dest == opts.StoreDir && named {
				if volumes[source] {
					t.Errorf("service %s: volume %s is another node's", name, source)
				}
				volumes[source] = true
			}
		}
		port := opts.Port
		if port == 0 {
			port = server.DEFAULT_PORT
		}
		clientURLs = append(clientURLs, fmt.Sprintf("nats://%s:%d", name, port))
	}
	if len(volumes) != len(nodes) {
		t.Errorf("the cluster nodes store on %d named volumes, want one each", len(volumes))
	}
	b, err := os.ReadFile(composePath)
	if err != nil {
		t.Fatal(err)
	}
	natsURL := strings.Join(clientURLs, ",")
	if !strings.Contains(string(b), "NATS_URL="+natsURL) || !strings.Contains(string(b), "DISPATCHER_NATS_REPLICAS=3") {
		t.Errorf("%s: the comment should tell operators NATS_URL=%s and DISPATCHER_NATS_REPLICAS=3", composePath, natsURL)
	}
	for _, name := range servicesBuiltFrom(c, "dispatcher") {
		s := c.Services[name]
		if s.Environment["NATS_URL"] != "${NATS_URL:-nats://nats:4222}" || s.Environment["DISPATCHER_NATS_REPLICAS"] != "${DISPATCHER_NATS_REPLICAS:-1}" {
			t.Errorf("service %s: NATS_URL and DISPATCHER_NATS_REPLICAS must be overridable from the shell, for the cluster profile", name)
		}
		env := expandedEnv(t, name, s)
		env["NATS_URL"], env["DISPATCHER_NATS_REPLICAS"] = natsURL, "3"
		if err := config.Load(mapGetenv(env)).Validate(); err != nil {
			t.Errorf("service %s on the cluster: the dispatcher would refuse to start: %v", name, err)
		}
	}
}

func versionAtLeast(v, minimum string) bool {
	parse := func(s string) (out [3]int, ok bool) {
		parts := strings.Split(strings.TrimPrefix(s, "v"), ".")
		if len(parts) != 3 {
			return out, false
		}
		for i, p := range parts {
			n, err := strconv.Atoi(p)
			if err != nil {
				return out, false
			}
			out[i] = n
		}
		return out, true
	}
	a, okA := parse(v)
	b, okB := parse(minimum)
	return okA && okB && slices.Compare(a[:], b[:]) >= 0
}

func TestRedisService(t *testing.T) {
	c := loadCompose(t)
	image := c.Services["redis"].Image
	if !strings.HasPrefix(image, "redis:7.") {
		t.Errorf("service redis: image %s: the supported and tested major version is 7", image)
	}
}

// ---------------------------------------------------------------------------
// The receiver, the demo script and the secret hand-over.

// flagsOf parses a Go file and returns the flags it defines (calls such as
// fs.StringVar(&v, "name", ...), fs.Bool("name", ...)), mapped to whether
// each is a boolean flag.
func flagsOf(t *testing.T, path string) map[string]bool {
	t.Helper()
	file, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	nameArg := map[string]int{
		"String": 0, "Bool": 0, "Int": 0, "Int64": 0, "Uint": 0, "Uint64": 0, "Float64": 0, "Duration": 0, "Func": 0, "BoolFunc": 0,
		"StringVar": 1, "BoolVar": 1, "IntVar": 1, "Int64Var": 1, "UintVar": 1, "Uint64Var": 1, "Float64Var": 1, "DurationVar": 1, "Var": 1, "TextVar": 1,
	}
	flags := map[string]bool{}
	ast.Inspect(file, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		i, ok := nameArg[sel.Sel.Name]
		if !ok || len(call.Args) <= i {
			return true
		}
		lit, ok := call.Args[i].(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return true
		}
		name, err := strconv.Unquote(lit.Value)
		if err != nil {
			return true
		}
		flags[name] = sel.Sel.Name == "Bool" || sel.Sel.Name == "BoolVar" || sel.Sel.Name == "BoolFunc"
		return true
	})
	if len(flags) == 0 {
		t.Fatalf("%s: found no flag definitions; this test's parser is stale", path)
	}
	return flags
}

// checkFlags reports arguments that the program's flag set would refuse:
// unknown flags, value flags without a value, and positional arguments.
func checkFlags(args []string, known map[string]bool) []error {
	var errs []error
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			errs = append(errs, fmt.Errorf("positional argument %q", a))
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		isBool, ok := known[name]
		switch {
		case !ok:
			// The flag package stops at the first unknown flag; so does this.
			return append(errs, fmt.Errorf("unknown flag %s", a))
		case !isBool && !hasValue:
			if i+1 >= len(args) {
				errs = append(errs, fmt.Errorf("flag %s has no value", a))
			}
			i++
		}
	}
	return errs
}

func TestCheckFlags(t *testing.T) {
	known := map[string]bool{"addr": false, "hang": true}
	tests := []struct {
		args []string
		errs int
	}{
		{[]string{"-addr", "x", "-hang"}, 0},
		{[]string{"--addr=x", "-hang=false"}, 0},
		{[]string{"-adr", "x"}, 1},
		{[]string{"-addr"}, 1},
		{[]string{"serve"}, 1},
	}
	for _, tt := range tests {
		if errs := checkFlags(tt.args, known); len(errs) != tt.errs {
			t.Errorf("checkFlags(%q) = %v, want %d errors", tt.args, errs, tt.errs)
		}
	}
}

// flagValue returns the value of -name in args.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		n, v, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || n != name {
			continue
		}
		if hasValue {
			return v, true
		}
		if i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

func TestReceiverCommand(t *testing.T) {
	c := loadCompose(t)
	flags := flagsOf(t, "../subscriber/main.go")
	for _, name := range servicesBuiltFrom(c, "subscriber") {
		for _, err := range checkFlags(c.Services[name].Command, flags) {
			t.Errorf("service %s: command: %v (flags of subscriber/main.go: %v)", name, err, keys(flags))
		}
	}
}

// demoScript is deploy/demo.sh split into its top level and its functions.
type demoScript struct {
	text      string
	functions map[string]string // name -> body
	topLevel  string
}

func loadDemoScript(t *testing.T) demoScript {
	t.Helper()
	b, err := os.ReadFile(demoPath)
	if err != nil {
		t.Fatal(err)
	}
	d := demoScript{text: string(b), functions: map[string]string{}}
	funcStart := regexp.MustCompile(`^([a-z_]+)\(\) \{$`)
	var top strings.Builder
	current := ""
	var body strings.Builder
	for line := range strings.SplitSeq(d.text, "\n") {
		if current == "" {
			if m := funcStart.FindStringSubmatch(line); m != nil {
				current = m[1]
				body.Reset()
				continue
			}
			top.WriteString(line + "\n")
			continue
		}
		if line == "}" {
			d.functions[current] = body.String()
			current = ""
			continue
		}
		body.WriteString(line + "\n")
	}
	d.topLevel = top.String()
	if len(d.functions) == 0 {
		t.Fatalf("%s: found no functions; this test's parser is stale", demoPath)
	}
	return d
}

var requiredVar = regexp.MustCompile(`\$\{([A-Z][A-Z0-9_]*):\?`)

func requiredVars(s string) []string {
	var out []string
	for _, m := range requiredVar.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

func TestDemoServices(t *testing.T) {
	c := loadCompose(t)
	d := loadDemoScript(t)
	dispatcherEnv := expandedEnv(t, "dispatcher-1", c.Services["dispatcher-1"])
	for _, name := range servicesBuiltFrom(c, "tools") {
		s := c.Services[name]
		if len(s.Command) != 1 {
			t.Errorf("service %s: command %q: want one of the script's steps", name, s.Command)
			continue
		}
		step := s.Command[0]
		body, ok := d.functions[step]
		if !ok || !strings.Contains(d.topLevel, step+") "+step+" ;;") {
			t.Errorf("service %s: command %q is not a step of %s", name, step, demoPath)
			continue
		}
		env := expandedEnv(t, name, s)
		for _, v := range append(requiredVars(d.topLevel), requiredVars(body)...) {
			if env[v] == "" {
				t.Errorf("service %s: %s step needs %s", name, step, v)
			}
		}
		if tok := env["DISPATCHER_ADMIN_TOKEN"]; tok != dispatcherEnv["DISPATCHER_ADMIN_TOKEN"] {
			t.Errorf("service %s: DISPATCHER_ADMIN_TOKEN differs from the dispatchers'", name)
		}
	}

	// The `dispatcher publish` flags the script uses exist.
	publishFlags := flagsOf(t, "../dispatcher/publish.go")
	uses := 0
	for line := range strings.SplitSeq(d.text, "\n") {
		_, rest, ok := strings.Cut(line, "dispatcher publish ")
		if !ok {
			continue
		}
		uses++
		for _, err := range checkFlags(shellWords(rest), publishFlags) {
			t.Errorf("%s: dispatcher publish: %v", demoPath, err)
		}
	}
	if uses == 0 {
		t.Errorf("%s: no `dispatcher publish` line found", demoPath)
	}
}

// TestSecretHandOver checks the path of the demo webhook's secret: the setup
// step writes it to a named volume, the receiver reads the same file from
// the same volume, read-only, as the uid that owns the directory.
func TestSecretHandOver(t *testing.T) {
	c := loadCompose(t)
	stages := parseDockerfile(t)
	setup, receiver := c.Services["webhook-setup"], c.Services["receiver"]
	secretsFile := expandedEnv(t, "webhook-setup", setup)["SECRETS_FILE"]
	readFile, ok := flagValue(receiver.Command, "secrets-file")
	if !ok || readFile != secretsFile {
		t.Fatalf("receiver reads -secrets-file %q, webhook-setup writes SECRETS_FILE %q", readFile, secretsFile)
	}
	dir := secretsFile[:strings.LastIndexByte(secretsFile, '/')]
	volumeAt := func(s service, wantRO bool) string {
		for _, v := range s.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) >= 2 && parts[1] == dir {
				if ro := len(parts) == 3 && parts[2] == "ro"; ro != wantRO {
					t.Errorf("volume %q: read-only=%v, want %v", v, ro, wantRO)
				}
				return parts[0]
			}
		}
		return ""
	}
	w, r := volumeAt(setup, false), volumeAt(receiver, true)
	if _, named := c.Volumes[w]; w == "" || !named || w != r {
		t.Errorf("secrets directory %s: webhook-setup mounts volume %q, receiver %q: want the same named volume", dir, w, r)
	}
	if receiver.DependsOn["webhook-setup"].Condition != "service_completed_successfully" {
		t.Error("receiver must start after webhook-setup completed: it reads the secrets file once, at start")
	}
	// The directory the volume takes its owner from, and the receiver's uid.
	tools, sub := stages["tools"], stages["subscriber"]
	if tools == nil || sub == nil {
		t.Fatal("Dockerfile stages tools and subscriber are needed")
	}
	uid, _, _ := strings.Cut(sub.last(t, "USER").Args, ":")
	run := ""
	for _, in := range tools.all("RUN") {
		run += in.Args
	}
	if !strings.Contains(run, "mkdir -p "+dir) || !strings.Contains(run, "chown "+uid+":") {
		t.Errorf("stage tools must create %s owned by the receiver's uid %s (a new volume copies that owner)", dir, uid)
	}
	if toolsUID, _, _ := strings.Cut(tools.last(t, "USER").Args, ":"); toolsUID != uid {
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
	receiver := c.Services["receiver"]
	if len(receiver.Networks) != 1 {
		t.Fatalf("receiver: networks %v: want exactly one, with a fixed address", receiver.Networks)
	}
	for netName, attach := range receiver.Networks {
		if attach.IPv4Address != u.Hostname() {
			t.Errorf("DEMO_WEBHOOK_URL host %s, receiver address %q", u.Hostname(), attach.IPv4Address)
		}
		addr, err := netip.ParseAddr(attach.IPv4Address)
		if err != nil {
			t.Fatalf("receiver ipv4_address: %v", err)
		}
		n, ok := c.Networks[netName]
		if !ok || len(n.IPAM.Config) != 1 {
			t.Fatalf("network %s: want one ipam config with subnet and ip_range", netName)
		}
		subnet, err1 := netip.ParsePrefix(n.IPAM.Config[0].Subnet)
		dynamic, err2 := netip.ParsePrefix(n.IPAM.Config[0].IPRange)
		if err := errors.Join(err1, err2); err != nil {
			t.Fatalf("network %s: %v", netName, err)
		}
		if !subnet.Contains(addr) || dynamic.Contains(addr) || !subnet.Contains(dynamic.Addr()) {
			t.Errorf("receiver address %s must be in subnet %s and outside the dynamic range %s", addr, subnet, dynamic)
		}
		if n.Internal {
			t.Errorf("network %s is internal: Docker publishes no ports from internal networks", netName)
		}
	}
	for name, s := range c.Services {
		if _, ok := s.Networks[keys(receiver.Networks)[0]]; !ok {
			t.Errorf("service %s is not on the stack's network", name)
		}
	}
}

// ---------------------------------------------------------------------------
// The Dockerfile's targets.

func TestDockerfileTargets(t *testing.T) {
	stages := parseDockerfile(t)
	build := stages["build"]
	if build == nil {
		t.Fatal("no build stage")
	}
	env := ""
	for _, in := range build.all("ENV") {
		env += " " + in.Args
	}
	if !strings.Contains(env, "CGO_ENABLED=0") {
		t.Error("build stage: set CGO_ENABLED=0 (the runtime images have no libc)")
	}
	built := map[string]string{} // output -> package
	for _, b := range build.goBuilds() {
		built[b.Out] = b.Pkg
		if !b.Trimpath {
			t.Errorf("go build %s: add -trimpath", b.Pkg)
		}
		for _, want := range []string{"-s", "-w", "-X main.version="} {
			if !strings.Contains(b.Ldflags, want) {
				t.Errorf("go build %s: -ldflags %q lacks %s", b.Pkg, b.Ldflags, want)
			}
		}
	}
	for _, pkg := range []string{"./dispatcher", "./subscriber", "./deploy/healthcheck"} {
		if !slices.Contains(slices.Collect(maps.Values(built)), pkg) {
			t.Errorf("build stage does not build %s", pkg)
		}
	}
	// The runtime stages run the binary built from their package, as a
	// non-root user, and expose the port the compose services listen on.
	c := loadCompose(t)
	for stageName, pkg := range map[string]string{"dispatcher": "./dispatcher", "subscriber": "./subscriber", "tools": "./dispatcher"} {
		st := stages[stageName]
		if st == nil {
			t.Errorf("no %s stage", stageName)
			continue
		}
		if user := st.last(t, "USER").Args; user == "root" || strings.HasPrefix(user, "0") {
			t.Errorf("stage %s runs as %s", stageName, user)
		}
		binary := ""
		for _, cp := range st.copies() {
			if cp.From == "build" && len(cp.Srcs) == 1 && built[cp.Srcs[0]] == pkg {
				binary = cp.Dest
			}
		}
		if binary == "" {
			t.Errorf("stage %s does not copy the binary built from %s", stageName, pkg)
			continue
		}
		if stageName == "tools" {
			continue // runs demo.sh, which calls the dispatcher binary by name
		}
		if entry := jsonArgs(t, st.last(t, "ENTRYPOINT")); len(entry) != 1 || entry[0] != binary {
			t.Errorf("stage %s: ENTRYPOINT %q, want [%q]", stageName, entry, binary)
		}
		for _, svc := range servicesBuiltFrom(c, stageName) {
			ports := listenPorts(t, c, svc)
			if exposed := st.last(t, "EXPOSE").Args; !ports[exposed] {
				t.Errorf("stage %s EXPOSEs %s, service %s listens on %v", stageName, exposed, svc, keys(ports))
			}
		}
	}
	// The dispatcher reads main.version, which -X sets.
	if !declaresVar(t, "../dispatcher", "version") {
		t.Error("package dispatcher declares no `version` variable for -X main.version")
	}
	// Every file copied from the build context exists.
	for _, st := range stages {
		for _, cp := range st.copies() {
			if cp.From != "" {
				continue
			}
			for _, src := range cp.Srcs {
				if _, err := os.Stat("../" + src); src != "." && err != nil {
					t.Errorf("stage %s copies %s: %v", st.Name, src, err)
				}
			}
		}
	}
	// The collector runs the configuration this directory holds.
	col := stages["otel-collector"]
	if col == nil {
		t.Fatal("no otel-collector stage")
	}
	cmd := jsonArgs(t, col.last(t, "CMD"))
	cp, ok := col.copiedTo(cmd[len(cmd)-1])
	if len(cmd) != 2 || cmd[0] != "--config" || !ok || !slices.Equal(cp.Srcs, []string{"deploy/" + collectorPath}) {
		t.Errorf("stage otel-collector: CMD %q must load deploy/%s, copied to that path", cmd, collectorPath)
	}
}

// declaresVar reports whether a package-level var is declared in the Go
// files of dir.
func declaresVar(t *testing.T, dir, name string) bool {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		file, err := parser.ParseFile(token.NewFileSet(), dir+"/"+e.Name(), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		if obj := file.Scope.Lookup(name); obj != nil && obj.Kind == ast.Var {
			return true
		}
	}
	return false
}

// ---------------------------------------------------------------------------
// The collector configuration.

type collectorConfig struct {
	Receivers map[string]struct {
		Protocols map[string]struct {
			Endpoint string `yaml:"endpoint"`
		} `yaml:"protocols"`
	} `yaml:"receivers"`
	Processors map[string]any `yaml:"processors"`
	Exporters  map[string]struct {
		Endpoint  string         `yaml:"endpoint"`
		TLS       map[string]any `yaml:"tls"`
		Verbosity string         `yaml:"verbosity"`
	} `yaml:"exporters"`
	Extensions map[string]any `yaml:"extensions"`
	Service    struct {
		Extensions []string `yaml:"extensions"`
		Pipelines  map[string]struct {
			Receivers  []string `yaml:"receivers"`
			Processors []string `yaml:"processors"`
			Exporters  []string `yaml:"exporters"`
		} `yaml:"pipelines"`
	} `yaml:"service"`
}

func loadCollector(t *testing.T) collectorConfig {
	t.Helper()
	var cfg collectorConfig
	decodeStrict(t, collectorPath, &cfg)
	return cfg
}

func collectorReceiverEndpoints(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for name, r := range loadCollector(t).Receivers {
		for proto, p := range r.Protocols {
			out[name+"/"+proto] = p.Endpoint
		}
	}
	return out
}

func collectorHTTPPort(t *testing.T) string {
	t.Helper()
	endpoint, ok := collectorReceiverEndpoints(t)["otlp/http"]
	if !ok {
		t.Fatalf("%s: no otlp receiver with the http protocol (the dispatcher exports OTLP/HTTP)", collectorPath)
	}
	return portOf(t, "otlp http receiver", endpoint)
}

func TestCollectorConfig(t *testing.T) {
	cfg := loadCollector(t)
	c := loadCompose(t)
	for proto, endpoint := range collectorReceiverEndpoints(t) {
		if host, _, err := net.SplitHostPort(endpoint); err != nil || host != "0.0.0.0" {
			t.Errorf("receiver %s endpoint %q: listen on 0.0.0.0 so the dispatchers reach it", proto, endpoint)
		}
	}
	for _, signal := range []string{"traces", "metrics"} {
		p, ok := cfg.Service.Pipelines[signal]
		if !ok {
			t.Errorf("no %s pipeline: the dispatcher exports %s over OTLP and would log export errors", signal, signal)
			continue
		}
		if len(p.Receivers) == 0 || len(p.Exporters) == 0 {
			t.Errorf("pipeline %s needs receivers and exporters", signal)
		}
		for _, r := range p.Receivers {
			if _, ok := cfg.Receivers[r]; !ok {
				t.Errorf("pipeline %s: receiver %s is not defined", signal, r)
			}
		}
		for _, pr := range p.Processors {
			if _, ok := cfg.Processors[pr]; !ok {
				t.Errorf("pipeline %s: processor %s is not defined", signal, pr)
			}
		}
		for _, e := range p.Exporters {
			if _, ok := cfg.Exporters[e]; !ok {
				t.Errorf("pipeline %s: exporter %s is not defined", signal, e)
			}
		}
	}
	toJaeger := false
	for _, e := range cfg.Service.Pipelines["traces"].Exporters {
		endpoint := cfg.Exporters[e].Endpoint
		host, port, err := net.SplitHostPort(endpoint)
		if err != nil || host != "jaeger" {
			continue
		}
		toJaeger = true
		if ports := listenPorts(t, c, "jaeger"); !ports[port] {
			t.Errorf("exporter %s sends to %s; jaeger listens on %v", e, endpoint, keys(ports))
		}
	}
	if !toJaeger {
		t.Error("the traces pipeline exports nothing to the jaeger service")
	}
	for _, ext := range cfg.Service.Extensions {
		if _, ok := cfg.Extensions[ext]; !ok {
			t.Errorf("extension %s is enabled but not defined", ext)
		}
	}
}

// ---------------------------------------------------------------------------
// Taskfile.yml and README.md.

// taskCmds is one entry of a task's cmds: a plain command string, or a
// map such as a `for` loop whose command is in `cmd` (task's looping form).
type taskCmds string

func (c *taskCmds) UnmarshalYAML(v *yaml.Node) error {
	if v.Kind == yaml.ScalarNode {
		*c = taskCmds(v.Value)
		return nil
	}
	var m struct {
		Cmd string `yaml:"cmd"`
	}
	if err := v.Decode(&m); err != nil {
		return err
	}
	*c = taskCmds(m.Cmd)
	return nil
}

func TestTaskfile(t *testing.T) {
	var tf struct {
		Version string `yaml:"version"`
		Tasks   map[string]struct {
			Desc string     `yaml:"desc"`
			Cmds []taskCmds `yaml:"cmds"`
		} `yaml:"tasks"`
	}
	b, err := os.ReadFile(taskfilePath)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &tf); err != nil {
		t.Fatalf("%s: %v", taskfilePath, err)
	}
	test, ok := tf.Tasks["test"]
	if !ok || len(test.Cmds) != 1 || !strings.HasPrefix(string(test.Cmds[0]), "go test ") {
		t.Errorf("task test: want one command starting with `go test` (the README's test command), got %q", test.Cmds)
	}
	for _, name := range []string{"up", "down", "logs", "demo"} {
		task, ok := tf.Tasks[name]
		if !ok {
			t.Errorf("task %s missing", name)
			continue
		}
		if task.Desc == "" {
			t.Errorf("task %s has no desc", name)
		}
		if len(task.Cmds) == 0 || !strings.HasPrefix(string(task.Cmds[0]), "docker compose ") {
			t.Errorf("task %s: want a `docker compose` command, got %q", name, task.Cmds)
		}
	}
	if demo := tf.Tasks["demo"].Cmds; len(demo) > 0 && !strings.HasSuffix(string(demo[0]), " demo") {
		t.Errorf("task demo: %q does not run the demo service", demo[0])
	}
}

// TestOperationsConfigTable checks that README.md's configuration
// table lists exactly config.Variables: same names, order, defaults and
// meanings.
func TestOperationsConfigTable(t *testing.T) {
	rows := configTableRows(t)
	var want [][3]string
	for _, v := range config.Variables {
		want = append(want, [3]string{v.Name, v.Default, v.Meaning})
	}
	for i := 0; i < max(len(rows), len(want)); i++ {
		switch {
		case i >= len(rows):
			t.Errorf("%s: the table lacks %s (config.Variables[%d])", operationsPath, want[i][0], i)
		case i >= len(want):
			t.Errorf("%s: the table lists %s, which config.Variables does not", operationsPath, rows[i][0])
		case rows[i] != want[i]:
			t.Errorf("%s: table row %d\n got  %q\n want %q (config.Variables)", operationsPath, i+1, rows[i], want[i])
		}
	}
}

// configTableRows returns the rows of the table whose header is
// | variable | default | meaning |, cells unescaped: surrounding backticks
// of the variable name dropped, \| turned back into |.
func configTableRows(t *testing.T) [][3]string {
	t.Helper()
	b, err := os.ReadFile(operationsPath)
	if err != nil {
		t.Fatal(err)
	}
	var rows [][3]string
	inTable := false
	for line := range strings.SplitSeq(string(b), "\n") {
		line = strings.TrimSpace(line)
		if !inTable {
			inTable = regexp.MustCompile(`^\|\s*variable\s*\|\s*default\s*\|\s*meaning\s*\|$`).MatchString(line)
			continue
		}
		if strings.HasPrefix(line, "|---") || strings.HasPrefix(line, "| ---") {
			continue
		}
		if !strings.HasPrefix(line, "|") {
			break
		}
		cells := splitRow(strings.Trim(line, "|"))
		if len(cells) != 3 {
			t.Fatalf("%s: table row %q has %d cells, want 3", operationsPath, line, len(cells))
		}
		cells[0] = strings.Trim(cells[0], "`")
		rows = append(rows, [3]string{cells[0], cells[1], cells[2]})
	}
	if len(rows) == 0 {
		t.Fatalf("%s: no table with the header | variable | default | meaning |", operationsPath)
	}
	return rows
}

// splitRow splits a Markdown table row on unescaped pipes.
func splitRow(s string) []string {
	var cells []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s) && s[i+1] == '|':
			cur.WriteByte('|')
			i++
		case s[i] == '|':
			cells = append(cells, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(s[i])
		}
	}
	return append(cells, strings.TrimSpace(cur.String()))
}

func TestExpand(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{"plain", "plain", ""},
		{"${A:-x}", "x", ""},
		{"${A-x}", "x", ""},
		{"${A:-}", "", ""},
		{"a$$b", "a$b", ""},
		{"http://${H:-nats}:${P:-4222}", "http://nats:4222", ""},
		{"${A}", "", "no default"},
		{"${A:?set it}", "", "required"},
		{"$A", "", "write $$"},
		{"${A:-${B:-x}}", "", "nested"},
		{"${A", "", "unclosed"},
	}
	for _, tt := range tests {
		got, err := expand(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("expand(%q) = %q, %v; want an error containing %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("expand(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// TestTestRedisImageMatchesCompose: tests that fall back to testcontainers
// run the same Redis image as the compose stack.
func TestTestRedisImageMatchesCompose(t *testing.T) {
	c := loadCompose(t)
	redisService, ok := c.Services["redis"]
	if !ok {
		t.Fatal("docker-compose.yml has no redis service")
	}
	if redisService.Image != testinfra.RedisImage {
		t.Fatalf("docker-compose.yml runs %s but internal/testinfra.RedisImage is %s: keep them equal", redisService.Image, testinfra.RedisImage)
	}
}
