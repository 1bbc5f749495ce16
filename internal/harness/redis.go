package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisReadyWithin bounds how long Start waits for the first PONG.
const redisReadyWithin = 15 * time.Second

// ErrNoRedisServer is returned when no redis-server binary is on PATH.
var ErrNoRedisServer = errors.New("no redis-server binary on PATH: install it (apt-get install -y redis-server)")

// Redis is a redis-server child process on a fixed loopback port that can
// be killed, signalled and started again on the same port and directory.
type Redis struct {
	Name string
	Addr string // 127.0.0.1:port
	// Dir is the server's working directory: its log and any files it
	// writes.
	Dir string
	// Args is the command line; NewRedis fills it, and a caller may change
	// it before Start (a Sentinel is started from its own config file).
	Args []string
	bin  string
	mu   sync.Mutex
	proc *Process
}

// RedisOptions configure NewRedis.
type RedisOptions struct {
	Name string // for messages
	Port int    // 0: a free one
	Dir  string // created if missing
	// Persistent keeps an append-only file fsynced on every write, so a
	// killed and restarted server comes back with exactly what it held.
	// Otherwise nothing is saved: a pure cache, as the README recommends.
	Persistent bool
}

// NewRedis prepares a redis-server from PATH; Start runs it.
func NewRedis(o RedisOptions) (*Redis, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, ErrNoRedisServer
	}
	if o.Port == 0 {
		if o.Port, err = FreePort(); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, err
	}
	persistence := []string{"--appendonly", "no"}
	if o.Persistent {
		persistence = []string{"--appendonly", "yes", "--appendfsync", "always"}
	}
	args := append([]string{"--port", strconv.Itoa(o.Port), "--bind", "127.0.0.1", "--save", ""}, persistence...)
	args = append(args, "--dir", o.Dir, "--logfile", filepath.Join(o.Dir, "redis.log"))
	return &Redis{Name: o.Name, Addr: fmt.Sprintf("127.0.0.1:%d", o.Port), Dir: o.Dir, Args: args, bin: bin}, nil
}

// URL is the server's redis:// URL (database 0).
func (r *Redis) URL() string { return "redis://" + r.Addr + "/0" }

// Start runs the server and waits until it answers PING. ctx bounds the
// wait, not the server's life.
func (r *Redis) Start(ctx context.Context) error {
	r.mu.Lock()
	running := r.proc != nil && r.proc.Running()
	r.mu.Unlock()
	if running {
		return fmt.Errorf("redis-server %s is already running", r.Name)
	}
	p, err := StartProcess("redis-server "+r.Name, exec.Command(r.bin, r.Args...), nil)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.proc = p
	r.mu.Unlock()
	return Poll(ctx, redisReadyWithin, 10*time.Millisecond, "redis-server "+r.Name+" to answer PING", func() (bool, error) {
		if !p.Running() {
			return false, fmt.Errorf("redis-server %s exited at start (%s): see its log in %s", r.Name, p.State(), r.Dir)
		}
		return PingRedis(ctx, "redis://"+r.Addr) == nil, nil
	})
}

// Process is the server's current process, or nil before its first start.
func (r *Redis) Process() *Process {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.proc
}

// Kill sends SIGKILL and waits for the process to end: no shutdown save
// (with Persistent, the append-only file has every write).
func (r *Redis) Kill() {
	if p := r.Process(); p != nil {
		p.Kill()
	}
}

// Signal sends sig to the running server (SIGSTOP hangs it, SIGCONT
// resumes it).
func (r *Redis) Signal(sig os.Signal) error {
	p := r.Process()
	if p == nil {
		return fmt.Errorf("redis-server %s was never started", r.Name)
	}
	return p.Signal(sig)
}

// PingRedis dials the URL and sends one PING, for at most a second.
func PingRedis(ctx context.Context, url string) error {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return err
	}
	opts.DialTimeout = time.Second
	c := redis.NewClient(opts)
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return c.Ping(ctx).Err()
}
