// Command mkdb builds a SQLite database from a .sql script: the demo's stand-in for an agency database
// that a data provider's connector reads through its sql backend. It needs no sqlite3 command-line tool,
// so the demo needs nothing but Go.
//
//	go run ./packaging/demo/data/mkdb --sql packaging/demo/data/fia/property.sql --out .demo/agency/fia/property.db
package main

import (
	"database/sql"
	"flag"
	"fmt"
	"os"

	_ "github.com/mattn/go-sqlite3" // registers "sqlite3"
)

func main() {
	script := flag.String("sql", "", "the SQL script to run (schema and rows)")
	out := flag.String("out", "", "the database file to make; an existing one is replaced")
	flag.Parse()
	if *script == "" || *out == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: mkdb --sql FILE.sql --out FILE.db")
		os.Exit(2)
	}
	if err := build(*script, *out); err != nil {
		fmt.Fprintln(os.Stderr, "mkdb:", err)
		os.Exit(1)
	}
}

func build(script, out string) error {
	text, err := os.ReadFile(script)
	if err != nil {
		return err
	}
	for _, f := range []string{out, out + "-journal", out + "-wal", out + "-shm"} {
		if err := os.Remove(f); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	db, err := sql.Open("sqlite3", "file:"+out+"?mode=rwc")
	if err != nil {
		return err
	}
	defer db.Close()
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	// go-sqlite3 runs every statement of a multi-statement string; one transaction makes it all or nothing.
	if _, err := tx.Exec(string(text)); err != nil {
		tx.Rollback()
		return fmt.Errorf("%s: %w", script, err)
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	return db.Close()
}
