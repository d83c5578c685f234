package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	grpcgzip "google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/metadata"

	"github.com/podstamp/podstamp/bench/internal/otlpwire"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("rawproxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:4317", "OTLP/gRPC listen address")
	upstream := fs.String("upstream", "127.0.0.1:14317", "upstream OTLP/gRPC host:port")
	compression := fs.String("upstream-compression", "none", "none or gzip")
	httpListen := fs.String("http-listen", "", "OTLP/HTTP listen address (empty: no HTTP floor)")
	httpUpstream := fs.String("http-upstream", "127.0.0.1:14318", "upstream OTLP/HTTP host:port")
	httpTransport := fs.String("http-transport", "reverse", "OTLP/HTTP side: reverse (ReverseProxy to --http-upstream), grpc (each body forwarded as a gRPC call to --upstream with a grpc-go client set up as podstamp's) or lean (the same through lean.go's HTTP/2, from the handler's goroutine)")
	transport := fs.String("transport", "grpc", "gRPC side: grpc (grpc-go's server and client) lean (an HTTP/2 of its own, one goroutine per connection; plain gRPC only) lean-server (that HTTP/2 as the server, grpc-go's client called from the connection's goroutine) or lean-client (grpc-go's server, calls forwarded on upstream connections of its own, one call at a time each)")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	var (
		addr string
		stop func()
	)
	switch *transport {
	case "grpc":
		p, err := start(*listen, *upstream, *compression == "gzip")
		if err != nil {
			log.Error("start", "err", err)
			return 1
		}
		addr, stop = p.lis.Addr().String(), p.stop
	case "lean", "lean-server", "lean-client":
		if *compression != "none" {
			log.Error("--transport "+*transport+" forwards plain gRPC only", "upstream-compression", *compression)
			return 2
		}
		var (
			lis net.Listener
			err error
		)
		switch *transport {
		case "lean":
			var p *leanProxy
			if p, err = startLean(*listen, *upstream); err == nil {
				lis, stop = p.lis, p.stop
			}
		case "lean-server":
			var p *leanProxy
			if p, err = startLeanServer(*listen, *upstream); err == nil {
				lis, stop = p.lis, p.stop
			}
		default:
			var p *proxy
			if p, err = startLeanClient(*listen, *upstream); err == nil {
				lis, stop = p.lis, p.stop
			}
		}
		if err != nil {
			log.Error("start", "err", err)
			return 1
		}
		addr = lis.Addr().String()
	default:
		log.Error("--transport: grpc, lean, lean-server or lean-client", "transport", *transport)
		return 2
	}
	log.Info("rawproxy listening", "addr", addr, "upstream", *upstream, "transport", *transport)
	if *httpListen != "" {
		var (
			h   *httpProxy
			err error
		)
		switch *httpTransport {
		case "reverse":
			h, err = startHTTP(*httpListen, *httpUpstream)
		case "grpc", "lean":
			h, err = startHTTPToGRPC(*httpListen, *upstream, *httpTransport == "lean")
		default:
			log.Error("--http-transport: reverse, grpc or lean", "http-transport", *httpTransport)
			stop()
			return 2
		}
		if err != nil {
			log.Error("start http", "err", err)
			stop()
			return 1
		}
		defer h.stop()
		log.Info("rawproxy listening for OTLP/HTTP", "addr", h.lis.Addr().String(), "upstream", *httpUpstream)
	}
	<-ctx.Done()
	stop()
	return 0
}

type proxy struct {
	lis  net.Listener
	srv  *grpc.Server
	cc   *grpc.ClientConn
	opts []grpc.CallOption
	done chan struct{}
}

func start(listen, upstream string, gzip bool) (*proxy, error) {
	cc, err := grpc.NewClient("passthrough:///"+upstream,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(otlpwire.Codec{})))
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		_ = cc.Close()
		return nil, err
	}
	p := &proxy{lis: lis, cc: cc, srv: grpc.NewServer(grpc.ForceServerCodecV2(otlpwire.Codec{})), done: make(chan struct{})}
	if gzip {
		p.opts = append(p.opts, grpc.UseCompressor(grpcgzip.Name))
	}
	registerExports(p.srv, func(ctx context.Context, method string, in *otlpwire.Frame) (*otlpwire.Frame, error) {
		// Forward deadline and cancellation, not the incoming metadata.
		var out otlpwire.Frame
		ctx = metadata.NewOutgoingContext(ctx, nil)
		if err := p.cc.Invoke(ctx, method, in, &out, p.opts...); err != nil {
			return nil, err
		}
		return &out, nil
	})
	go func() {
		defer close(p.done)
		_ = p.srv.Serve(lis)
	}()
	return p, nil
}

// registerExports registers every signal's Export method on srv, each call
// answered by forward with the call's method and request message.
func registerExports(srv *grpc.Server, forward func(ctx context.Context, method string, in *otlpwire.Frame) (*otlpwire.Frame, error)) {
	for _, sig := range otlpwire.Signals {
		method := otlpwire.Method[sig]
		i := strings.LastIndexByte(method, '/')
		srv.RegisterService(&grpc.ServiceDesc{
			ServiceName: method[1:i],
			HandlerType: (*any)(nil),
			Methods: []grpc.MethodDesc{{
				MethodName: method[i+1:],
				Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
					var in otlpwire.Frame
					if err := dec(&in); err != nil {
						return nil, err
					}
					return forward(ctx, method, &in)
				},
			}},
		}, nil)
	}
}

func (p *proxy) stop() {
	p.srv.GracefulStop()
	<-p.done
	if p.cc != nil {
		_ = p.cc.Close()
	}
}

// httpProxy is the HTTP floor: net/http/httputil's ReverseProxy, which
// streams each request body and answer unchanged to and from one upstream.
// Its transport keeps as many idle upstream connections as clients use, so
// that it does not dial per request (the default keeps two).
type httpProxy struct {
	lis        net.Listener
	srv        *http.Server
	done       chan struct{}
	closeExtra func()
}

func startHTTP(listen, upstream string) (*httpProxy, error) {
	u, err := url.Parse("http://" + upstream)
	if err != nil {
		return nil, err
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second,
		DisableCompression: true}
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	h := &httpProxy{lis: lis, srv: &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		_ = h.srv.Serve(lis)
	}()
	return h, nil
}

func (h *httpProxy) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = h.srv.Shutdown(ctx)
	<-h.done
	if h.closeExtra != nil {
		h.closeExtra()
	}
	if rp, ok := h.srv.Handler.(*httputil.ReverseProxy); ok {
		if t, ok := rp.Transport.(*http.Transport); ok {
			t.CloseIdleConnections()
		}
	}
}
