package certlogin_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/mydatafed/mydata/hub/internal/identity/certlogin"
	"github.com/mydatafed/mydata/pkg/cardca"
)

// fuzzChallenge is the challenge the committed seeds were signed over.
var fuzzChallenge = []byte("fuzz-challenge-0123456789abcdefghijklmnopqrstu")

// FuzzVerify feeds Verify arbitrary SignedData bytes. It checks that nothing panics and that every
// refusal carries a reason. The committed seeds (testdata/fuzz/FuzzVerify, rewritten with
// MYDATA_WRITE_FUZZ_SEEDS=1) come from a CA made at the time they were written, so they fail the
// chain; the seeds added here are signed by this run's CA and pass.
func FuzzVerify(f *testing.F) {
	fx := newFixture(f, false)
	v := fx.verifier(f, nil)
	leaf := fx.citizen(f, cardca.CitizenOptions{})
	rsaLeaf := fx.citizen(f, cardca.CitizenOptions{RSA: true})
	seeds := map[string][]byte{
		"valid-attached":  sign(f, leaf, fuzzChallenge, false),
		"valid-detached":  sign(f, leaf, fuzzChallenge, true),
		"valid-rsa":       sign(f, rsaLeaf, fuzzChallenge, false),
		"other-challenge": sign(f, leaf, []byte("other"), false),
		// ContentInfo{signedData, [0] SEQUENCE{...}} in BER indefinite lengths, cut short.
		"ber-indefinite": {0x30, 0x80, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02, 0xa0, 0x80, 0x30, 0x80, 0x02, 0x01, 0x01},
	}
	seeds["truncated"] = seeds["valid-attached"][:len(seeds["valid-attached"])*2/3]
	for _, s := range seeds {
		f.Add(s)
	}
	if os.Getenv("MYDATA_WRITE_FUZZ_SEEDS") == "1" {
		dir := filepath.Join("testdata", "fuzz", "FuzzVerify")
		for name, s := range seeds {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				f.Fatal(err)
			}
		}
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		proof, err := v.Verify(context.Background(), der, fuzzChallenge, citizenID)
		if err != nil {
			if certlogin.Reason(err) == nil {
				t.Fatalf("refusal without a reason: %v", err)
			}
			return
		}
		if proof == nil || proof.Certificate == nil {
			t.Fatal("success without a proof")
		}
	})
}
