// Command identity plays, for the demo, the parts of the hub's login methods that live outside the hub:
// the authority that issues citizens' smart cards, the signing component on a citizen's computer, the
// household/NHI registry the two-documents login asks, and a mail server where one-time codes arrive.
// Everything here is synthetic and for loopback only; none of it is fit for real use.
//
// Usage:
//
//	identity ca       --dir D [--citizens A123456789,...] [--revoked A123456789]
//	identity signer   --cert C --key K --origin http://localhost:8080 [--origin ...] [--listen 127.0.0.1:61161]
//	identity registry --records F [--token-file T] [--listen 127.0.0.1:8090]
//	identity mail     --dir D [--listen 127.0.0.1:2525] [--http 127.0.0.1:8025]
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

const usage = `usage: identity COMMAND [flags]

The demo's stand-ins for what the hub's login methods talk to:
  ca        make a test CA for natural-person cards, a card per demo citizen, one revoked card and a CRL
  signer    the citizen's signing component (pkg/cardsigner) for one card "in the reader"
  registry  the sample household/NHI registry of the two-documents login, over HTTP on loopback
  mail      an SMTP sink on loopback that keeps each message and prints the one-time codes in it

"identity COMMAND -h" lists a command's flags.
`

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "identity:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "ca":
		return runCA(rest, stdout, stderr)
	case "signer":
		return runSigner(rest, stderr)
	case "registry":
		return runRegistry(rest, stderr)
	case "mail":
		return runMail(rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

// newFlags makes a subcommand's flag set, whose errors and help go to stderr.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("identity "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parse parses args and refuses positional arguments.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return nil
}
