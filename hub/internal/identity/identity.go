// Package identity holds what every login method shares: the result a method proves, and the ordered,
// configurable assurance levels that datasets ask for. Each method lives in a package of its own under
// this one (certlogin, passkey, otp, twodocs, oidclogin); the portal drives their pages.
package identity

import (
	"fmt"
	"slices"
)

// Result is what a method proved about the person at the browser.
type Result struct {
	// Subject is the national ID, already checked by nationalid.Valid.
	Subject string
	// Method is the method's configured id ("moica", "passkey", "otp", ...).
	Method string
	// Level is the assurance level the configuration gives that method.
	Level int
	// Evidence names what was shown, for the consent record and the logs (a certificate's issuer and
	// serial, an identity provider and its acr): never a secret, never the national ID.
	Evidence string
}

// Level is one assurance level with its names. Levels are ordered by Rank: higher is stronger.
type Level struct {
	Rank   int    `yaml:"rank"`
	NameZh string `yaml:"name_zh"`
	NameEn string `yaml:"name_en"`
}

// DefaultLevels are the real platform's three tiers.
func DefaultLevels() []Level {
	return []Level{
		{1, "低", "low"},
		{2, "中", "medium"},
		{3, "高", "high"},
	}
}

// Levels is the configured, ordered list.
type Levels []Level

// Validate checks that ranks are positive and distinct, and that every level has both names.
func (ls Levels) Validate() error {
	if len(ls) == 0 {
		return fmt.Errorf("no levels")
	}
	seen := map[int]bool{}
	for i, l := range ls {
		if l.Rank < 1 {
			return fmt.Errorf("[%d].rank: %d is not a positive number", i, l.Rank)
		}
		if seen[l.Rank] {
			return fmt.Errorf("[%d].rank: %d appears twice", i, l.Rank)
		}
		seen[l.Rank] = true
		if l.NameZh == "" || l.NameEn == "" {
			return fmt.Errorf("[%d]: name_zh and name_en are required", i)
		}
	}
	return nil
}

// Find returns the level of that rank.
func (ls Levels) Find(rank int) (Level, bool) {
	i := slices.IndexFunc(ls, func(l Level) bool { return l.Rank == rank })
	if i < 0 {
		return Level{}, false
	}
	return ls[i], true
}

// Requirement is what a dataset asks of a login: a minimum level, and optionally the only methods its
// holder accepts (the real platform lets the data provider choose). Zero value: any method at level 1.
type Requirement struct {
	MinLevel int
	Methods  []string
}

// Met says whether a session from method at level satisfies every requirement.
func Met(method string, level int, reqs ...Requirement) bool {
	for _, r := range reqs {
		if level < r.MinLevel {
			return false
		}
		if len(r.Methods) > 0 && !slices.Contains(r.Methods, method) {
			return false
		}
	}
	return true
}
