package testinfra

import (
	"context"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go"
	tcredis "github.com/testcontainers/testcontainers-go/modules/redis"
)

// RedisImage is the Redis image of docker-compose.yml, used when a test
// needs Redis and neither REDIS_URL nor a redis-server binary exists but a
// Docker engine does (deploy/compose_test.go keeps the two pins equal).
const RedisImage = "redis:7.4.2-alpine"

// startRedisContainer runs RedisImage with testcontainers. Its Stop and
// Start stop and restart the container (same port mapping is not kept by
// Docker, so outage tests that need the same address use redis-server).
func startRedisContainer(t testing.TB) (*Redis, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ctr, err := tcredis.Run(ctx, RedisImage)
	testcontainers.CleanupContainer(t, ctr)
	if err != nil {
		return nil, err
	}
	url, err := ctr.ConnectionString(ctx)
	if err != nil {
		return nil, err
	}
	return &Redis{URL: url, t: t}, nil
}
