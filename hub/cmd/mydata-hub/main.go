// Command mydata-hub runs a node of the MyData Federation hub and administers the federation.
package main

import (
	"fmt"
	"os"
	// The portal writes times in a configured zone (Asia/Taipei): the zone database travels in the binary
	// so that a minimal container image needs none.
	_ "time/tzdata"
)

const usage = `mydata-hub: the MyData Federation hub

Usage:
  mydata-hub serve  --config FILE [--join URL --token T]
                                         run a hub node; with --join, a new node joins a running cluster
  mydata-hub admin  [--config FILE] ...  administer the federation (run 'mydata-hub admin' for its commands)
  mydata-hub operator enroll --hub URL --token T --name N --dir DIR
                                         enroll an operator added with 'admin operator add'
  mydata-hub backup --config FILE --out F
                                         write a backup (state and CA; keep it secret) of the running hub
  mydata-hub restore --config FILE --in F
                                         unpack a backup onto a fresh node's data_dir, then serve
  mydata-hub ca fingerprint --config FILE
                                         print the root CA fingerprint connectors pin (--hub-ca)
  mydata-hub version                     print the version
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "admin":
		err = admin(os.Args[2:], os.Stdout)
	case "operator":
		err = operatorCmd(os.Args[2:], os.Stdout)
	case "backup":
		err = backupCmd(os.Args[2:], os.Stdout)
	case "restore":
		err = restoreCmd(os.Args[2:], os.Stdout)
	case "ca":
		err = caCmd(os.Args[2:], os.Stdout)
	case "version":
		err = version(os.Stdout)
	case "help", "-h", "--help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "mydata-hub: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mydata-hub:", err)
		os.Exit(1)
	}
}
