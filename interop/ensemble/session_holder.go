// A go-zookeeper (Debian golang-github-samuel-go-zookeeper-dev) session that holds one ephemeral
// node, driven by quorum_return.py over stdin/stdout:
//
//	session_holder HOSTS PATH TIMEOUT_MS
//
// On start it connects, creates PATH (ephemeral, data "go") and prints "READY <session id hex>".
// Commands, one a line: "where" prints "SERVER <host:port>" (the member it is connected to,
// once connected); "check" waits up to 30 s for a connected session and prints
// "CHECK <session id hex> <ephemeralOwner hex or none>"; "quit" ends it.
package main

import (
	"bufio"
	"fmt"
	"io/ioutil"
	"log"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/samuel/go-zookeeper/zk"
)

func waitConnected(c *zk.Conn, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if c.State() == zk.StateHasSession {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: session_holder HOSTS PATH TIMEOUT_MS")
		os.Exit(2)
	}
	hosts := strings.Split(os.Args[1], ",")
	path := os.Args[2]
	ms, err := strconv.Atoi(os.Args[3])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad TIMEOUT_MS:", err)
		os.Exit(2)
	}
	c, _, err := zk.Connect(hosts, time.Duration(ms)*time.Millisecond, zk.WithLogger(log.New(ioutil.Discard, "", 0)))
	if err != nil || !waitConnected(c, 30*time.Second) {
		fmt.Println("ERROR connect", err)
		os.Exit(1)
	}
	if _, err := c.Create(path, []byte("go"), zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		fmt.Println("ERROR create", err)
		os.Exit(1)
	}
	fmt.Printf("READY %x\n", c.SessionID())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch strings.TrimSpace(in.Text()) {
		case "where":
			waitConnected(c, 30*time.Second)
			fmt.Printf("SERVER %s\n", c.Server())
		case "check":
			owner := "none"
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
				if !waitConnected(c, time.Until(deadline)) {
					break
				}
				_, st, err := c.Get(path)
				if err == zk.ErrNoNode {
					break
				}
				if err == nil {
					owner = fmt.Sprintf("%x", st.EphemeralOwner)
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			fmt.Printf("CHECK %x %s\n", c.SessionID(), owner)
		case "quit":
			c.Close()
			return
		}
	}
}
