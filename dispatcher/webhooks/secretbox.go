package webhooks

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// Encrypted secrets at rest.
//
// A secret is sealed with AES-256-GCM under the operator key
// (DISPATCHER_SECRET_KEY), with a fresh random 96-bit nonce per write and the
// integration id as additional authenticated data, so a ciphertext copied to
// another integration's record does not decrypt. The sealed form starts with
// a scheme version and a key id (a fingerprint of the key, not the key), so
// a later key rotation can tell which key sealed a value, and a dispatcher
// configured with the wrong key says so instead of "message authentication
// failed".
//
//	binary (Redis):  0x01 | key id (4) | nonce (12) | ciphertext+tag
//	text (KV JSON):  "v1." + hex(key id) + "." + base64url(nonce | ciphertext+tag)
const (
	SecretKeyLen   = 32 // AES-256
	sealScheme     = 1
	keyIDLen       = 4
	nonceLen       = 12
	sealHeaderLen  = 1 + keyIDLen + nonceLen
	textSealPrefix = "v1."
	aadPrefix      = "blazelock/webhook-secret/"
)

type secretBox struct {
	aead  cipher.AEAD
	keyID [keyIDLen]byte
}

func newSecretBox(key []byte) (*secretBox, error) {
	if len(key) != SecretKeyLen {
		return nil, fmt.Errorf("secret key must be %d bytes (AES-256), got %d", SecretKeyLen, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("create AES cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("create AES-GCM: %w", err)
	}
	b := &secretBox{aead: aead}
	sum := sha256.Sum256(append([]byte("blazelock webhook secret key id\x00"), key...))
	copy(b.keyID[:], sum[:])
	return b, nil
}

// KeyID is the hex fingerprint of the key, safe to log.
func (b *secretBox) KeyID() string { return hex.EncodeToString(b.keyID[:]) }

// seal returns the binary sealed form of secret for integrationID.
func (b *secretBox) seal(integrationID, secret string) []byte {
	out := make([]byte, sealHeaderLen, sealHeaderLen+len(secret)+b.aead.Overhead())
	out[0] = sealScheme
	copy(out[1:], b.keyID[:])
	nonce := out[1+keyIDLen : sealHeaderLen]
	// crypto/rand.Read never fails on supported systems (Go ≥ 1.24).
	_, _ = rand.Read(nonce)
	return b.aead.Seal(out, nonce, []byte(secret), aad(integrationID))
}

func aad(integrationID string) []byte {
	return []byte(aadPrefix + integrationID)
}

// open decrypts a binary sealed form. sealed may be any string-backed bytes;
// it is not modified.
func (b *secretBox) open(integrationID string, sealed string) (string, error) {
	if len(sealed) < sealHeaderLen+b.aead.Overhead() || sealed[0] != sealScheme {
		return "", fmt.Errorf("%w: the sealed secret of integration %s is malformed", ErrSecretKey, integrationID)
	}
	if sealed[1:1+keyIDLen] != string(b.keyID[:]) {
		return "", fmt.Errorf("%w: the secret of integration %s was encrypted with key id %s, but the configured secret key has id %s",
			ErrSecretKey, integrationID, hex.EncodeToString([]byte(sealed[1:1+keyIDLen])), b.KeyID())
	}
	// One buffer holds the ciphertext (opened in place) and the AAD.
	ct := sealed[sealHeaderLen:]
	buf := make([]byte, len(ct)+len(aadPrefix)+len(integrationID))
	copy(buf, ct)
	copy(buf[len(ct):], aadPrefix)
	copy(buf[len(ct)+len(aadPrefix):], integrationID)
	var nonce [nonceLen]byte
	copy(nonce[:], sealed[1+keyIDLen:sealHeaderLen])
	plain, err := b.aead.Open(buf[:0], nonce[:], buf[:len(ct)], buf[len(ct):])
	if err != nil {
		return "", fmt.Errorf("%w: the secret of integration %s does not authenticate under the configured key (altered, or copied from another integration)",
			ErrSecretKey, integrationID)
	}
	return string(plain), nil
}

// sealedToText and textToSealed convert between the binary form (Redis) and
// the text form stored in the KV JSON record.
func sealedToText(sealed []byte) string {
	return textSealPrefix + hex.EncodeToString(sealed[1:1+keyIDLen]) + "." +
		base64.RawURLEncoding.EncodeToString(sealed[1+keyIDLen:])
}

func textToSealed(text string) ([]byte, error) {
	rest, ok := strings.CutPrefix(text, textSealPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: unknown sealed-secret scheme", ErrSecretKey)
	}
	idHex, body, ok := strings.Cut(rest, ".")
	if !ok {
		return nil, fmt.Errorf("%w: malformed sealed secret", ErrSecretKey)
	}
	id, err := hex.DecodeString(idHex)
	if err != nil || len(id) != keyIDLen {
		return nil, fmt.Errorf("%w: malformed key id in sealed secret", ErrSecretKey)
	}
	raw, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		return nil, fmt.Errorf("%w: malformed sealed secret", ErrSecretKey)
	}
	out := make([]byte, 0, 1+keyIDLen+len(raw))
	out = append(out, sealScheme)
	out = append(out, id...)
	return append(out, raw...), nil
}
