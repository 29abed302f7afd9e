package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/mydatafed/mydata/connector/internal/counter"
)

const counterUsage = `usage: mydata-connector counter passwd NAME
  reads a password from standard input (twice, without echo, at a terminal; its first line otherwise)
  and prints the staff file line "NAME:<bcrypt hash>" to append to counter.staff_file`

func counterCmd(args []string, in *os.File, out, prompt io.Writer) error {
	if len(args) != 2 || args[0] != "passwd" {
		return errors.New(counterUsage)
	}
	name := args[1]
	var pw []byte
	if isTerminal(in) {
		first, err := readSecret(in, prompt, "Password for "+name+": ")
		if err != nil {
			return err
		}
		again, err := readSecret(in, prompt, "Again: ")
		if err != nil {
			return err
		}
		if string(first) != string(again) {
			return errors.New("the passwords differ")
		}
		pw = first
	} else {
		line, err := bufio.NewReader(io.LimitReader(in, 4096)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		pw = []byte(strings.TrimRight(line, "\r\n"))
	}
	l, err := counter.HashLine(name, pw)
	clear(pw)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, l)
	return err
}

// readSecret prompts and reads one line with the terminal's echo off.
func readSecret(in *os.File, prompt io.Writer, p string) ([]byte, error) {
	fmt.Fprint(prompt, p)
	restore, err := noEcho(in)
	if err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(in).ReadString('\n')
	restore()
	fmt.Fprintln(prompt)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return []byte(strings.TrimRight(line, "\r\n")), nil
}
