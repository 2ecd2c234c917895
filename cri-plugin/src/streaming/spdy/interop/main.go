// A Go peer for checking berth's SPDY against moby/spdystream, the library kubelet,
// kubectl and crictl use. See interop_go_client and interop_go_server in ../pipe_tests.rs:
//
//	go mod tidy
//	go run . client 127.0.0.1:18541   # Go client (as client-go v4) against our server
//	go run . server 127.0.0.1:18542   # Go server (echoes every stream) for our client
package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/moby/spdystream"
)

func must(err error) {
	if err != nil {
		fmt.Println("FAIL:", err)
		os.Exit(1)
	}
}

// client: upgrade by hand, then exec-style streams as client-go v4 does.
func client(addr string) {
	c, err := net.Dial("tcp", addr)
	must(err)
	req := "POST /exec HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n"
	_, err = c.Write([]byte(req))
	must(err)
	var head []byte
	b := make([]byte, 1)
	for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		_, err := c.Read(b)
		must(err)
		head = append(head, b[0])
	}
	if !strings.Contains(string(head), " 101 ") {
		must(fmt.Errorf("no 101: %s", head))
	}
	conn, err := spdystream.NewConnection(c, false)
	must(err)
	go conn.Serve(spdystream.NoOpStreamHandler)
	open := func(kind string) *spdystream.Stream {
		h := http.Header{}
		h.Set("streamType", kind)
		s, err := conn.CreateStream(h, nil, false)
		must(err)
		must(s.WaitTimeout(5 * time.Second))
		return s
	}
	errS := open("error")
	stdin := open("stdin")
	stdout := open("stdout")
	stderr := open("stderr")
	if rtt, err := conn.Ping(); err != nil {
		must(err)
	} else {
		fmt.Println("ping ok", rtt > 0)
	}
	payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	go func() {
		_, err := stdin.Write(payload)
		must(err)
		must(stdin.Close())
	}()
	outCh := make(chan []byte)
	go func() { d, _ := io.ReadAll(stdout); outCh <- d }()
	errOut, _ := io.ReadAll(stderr)
	out := <-outCh
	status, _ := io.ReadAll(errS)
	fmt.Printf("stdout %d bytes equal=%v stderr=%q status=%s\n", len(out), bytes.Equal(out, payload), errOut, status)
	conn.Close()
}

// server: accept streams, reply, echo each stream's data back on it.
func server(addr string) {
	l, err := net.Listen("tcp", addr)
	must(err)
	fmt.Println("listening")
	c, err := l.Accept()
	must(err)
	conn, err := spdystream.NewConnection(c, true)
	must(err)
	conn.Serve(func(s *spdystream.Stream) {
		must(s.SendReply(http.Header{"X-Seen": []string{s.Headers().Get("streamType")}}, false))
		go func() {
			n, _ := io.Copy(s, s)
			fmt.Printf("echoed %d bytes on %s\n", n, s.Headers().Get("streamType"))
			s.Close()
		}()
	})
	fmt.Println("server done")
}

func main() {
	if os.Args[1] == "client" {
		client(os.Args[2])
	} else {
		server(os.Args[2])
	}
}
