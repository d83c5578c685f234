package sink

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

func marshalStatusProto(st *spb.Status) []byte {
	b, _ := proto.Marshal(st)
	return b
}

func marshalStatusJSON(st *spb.Status) []byte {
	b, _ := protojson.Marshal(st)
	return b
}

// Expected is the pod a source address belongs to.
type Expected struct {
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	UID       string `json:"uid,omitempty"`
}

// IdentityReport is the result of the identity check.
type IdentityReport struct {
	Resources    int64 `json:"resources"`     // every resource received
	Items        int64 `json:"items"`         // every item received
	Matched      int64 `json:"matched"`       // resources stamped with the right pod
	MatchedItems int64 `json:"matched_items"` // their items
	Wrong        int64 `json:"wrong"`         // stamped with another pod
	Unstamped    int64 `json:"unstamped"`     // carrying neither k8s.pod.name nor k8s.pod.uid
	Unexpected   int64 `json:"unexpected"`    // loadgen.source missing or not in the expected map
	// Share is Matched / (Resources - Unexpected), 0 when nothing was checked.
	Share float64 `json:"share"`
}

// Identity checks every resource received so far against expected
// (source address -> pod). A resource matches when it carries k8s.pod.name
// or k8s.pod.uid, and every one of k8s.pod.name, k8s.pod.uid and
// k8s.namespace.name it carries equals the expected value (an empty
// expected field is not compared).
func (s *Sink) Identity(expected map[string]Expected) IdentityReport {
	var rep IdentityReport
	for _, row := range s.IdentityRows() {
		rep.Resources += row.Resources
		rep.Items += row.Items
		exp, ok := expected[row.Source]
		switch {
		case row.Source == "" || !ok:
			rep.Unexpected += row.Resources
		case row.PodName == "" && row.PodUID == "":
			rep.Unstamped += row.Resources
		case matches(row.PodName, exp.Name) && matches(row.PodUID, exp.UID) && matches(row.Namespace, exp.Namespace):
			rep.Matched += row.Resources
			rep.MatchedItems += row.Items
		default:
			rep.Wrong += row.Resources
		}
	}
	if checked := rep.Resources - rep.Unexpected; checked > 0 {
		rep.Share = float64(rep.Matched) / float64(checked)
	}
	return rep
}

func matches(got, want string) bool { return got == "" || want == "" || got == want }

// ControlHandler serves the control paths (also mounted on the OTLP/HTTP
// listener):
//
//	GET  /stats               counters (Stats)
//	GET  /records             kept records ([]Record)
//	GET  /identity            aggregated (source, pod) table ([]IdentityRow)
//	POST /identity            body {"<source ip>": {"namespace","name","uid"}} -> IdentityReport
//	POST /fail?on=1|0[&grpc_code=14][&http_status=503]
//	POST /reset               clear counters and records
func (s *Sink) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	s.mountControl(mux)
	return mux
}

func (s *Sink) mountControl(mux *http.ServeMux) {
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, s.Stats()) })
	mux.HandleFunc("GET /records", func(w http.ResponseWriter, _ *http.Request) {
		recs := s.Records()
		if recs == nil {
			recs = []Record{}
		}
		writeJSON(w, recs)
	})
	mux.HandleFunc("GET /identity", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, s.IdentityRows()) })
	mux.HandleFunc("POST /identity", func(w http.ResponseWriter, r *http.Request) {
		var exp map[string]Expected
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<20)).Decode(&exp); err != nil {
			http.Error(w, "body must be a JSON object of source address -> pod: "+err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, s.Identity(exp))
	})
	mux.HandleFunc("POST /fail", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		on, err := strconv.ParseBool(q.Get("on"))
		if err != nil {
			http.Error(w, "on must be 1 or 0", http.StatusBadRequest)
			return
		}
		gc, hs := codes.Code(s.failGRPC.Load()), int(s.failHTTP.Load())
		if v := q.Get("grpc_code"); v != "" {
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil || n == 0 || n > 16 {
				http.Error(w, "grpc_code must be 1..16", http.StatusBadRequest)
				return
			}
			gc = codes.Code(n)
		}
		if v := q.Get("http_status"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 400 || n > 599 {
				http.Error(w, "http_status must be 400..599", http.StatusBadRequest)
				return
			}
			hs = n
		}
		s.SetFailCodes(gc, hs)
		s.SetFail(on)
		writeJSON(w, map[string]any{"failing": on, "grpc_code": uint32(gc), "http_status": hs})
	})
	mux.HandleFunc("POST /reset", func(w http.ResponseWriter, _ *http.Request) {
		s.Reset()
		writeJSON(w, map[string]bool{"reset": true})
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, fmt.Sprint(err), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(b, '\n'))
}
