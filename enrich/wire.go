package enrich

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
)

// ErrMalformed is wrapped by every error about a request whose envelope or
// resource level is not valid protobuf.
var ErrMalformed = errors.New("malformed OTLP protobuf")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// Stamper adds pod attributes to protobuf-encoded OTLP export requests
// without decoding them: only each resource's attribute keys (and the string
// values association reads) are parsed; everything else is copied as bytes.
// It is safe for concurrent use.
type Stamper struct {
	e     engine
	cache [cacheSlots]atomic.Pointer[podEntry]
	pool  sync.Pool
}

// cacheSlots is the size of the direct-mapped cache of encoded attributes.
const cacheSlots = 1024

// podEntry is the encoded attributes of one (pod, container, IP family).
type podEntry struct {
	pod   *Pod
	c     int
	fam   family
	attrs []encAttr
}

// encAttr is one attribute, encoded as a whole Resource.attributes field.
type encAttr struct {
	key, value string
	enc        []byte
}

// NewStamper makes a Stamper applying rules (see Compile). r may be nil: no
// pod is ever found, every request passes through unchanged.
func NewStamper(rules *Rules, r Resolver, opts ...Option) *Stamper {
	return newStamper(rules.r, r, opts)
}

func newStamper(rs *rules, r Resolver, opts []Option) *Stamper {
	s := &Stamper{e: newEngine(rs, r, opts)}
	s.pool.New = func() any { return new(scratch) }
	return s
}

// scratch is the per-request working memory, pooled.
type scratch struct {
	plans []rsPlan
	res   []resSpan // Resource field occurrences
	dels  []span    // KeyValue fields to drop
	adds  [][]byte  // encoded KeyValue fields to append
	kvs   []kvRef   // the current resource's attributes
	sig   Signal
	items int // the request's items counted so far

	// Profiles only: resource attribute keys and string values may be
	// references into the dictionary's string table (loaded lazily).
	profiles   bool
	strsLoaded bool
	strs       [][]byte
}

type span struct{ tag, start, end int } // field tag offset, content start, content end

// resSpan is one occurrence of the Resource field and the bytes of the
// attributes dropped from it.
type resSpan struct {
	span
	delBytes int
}

type rsPlan struct {
	span                   // the Resource<Signal> field
	resLo, resHi           int
	delLo, delHi           int
	addLo, addHi, addBytes int
}

func (p *rsPlan) changed() bool { return p.delHi > p.delLo || p.addHi > p.addLo }

type kvRef struct {
	span
	key  []byte
	cv   clientValue // cv.str aliases the request
	drop bool
	occ  int // index of its Resource occurrence in scratch.res
}

// bstr views b as a string without copying; the result must not outlive b
// and must not be retained.
func bstr(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// refMinBytes is the shortest unchanged range of the request Stamp
// references instead of copying. A referenced range costs its consumer a
// buffer reference and a slice entry: measured through the proxy (stamping,
// views, the transport's copy, freeing) on requests of 24 small resources,
// referencing ranges of about 700 bytes took about 30% more time than
// copying them, and 2 KiB was no slower than 512 B on any shape measured.
const refMinBytes = 2 << 10

// Stamped is what Stamp made of one request.
type Stamped struct {
	// Segs is the output: its concatenation is the stamped request. When
	// nothing was added or dropped it is body itself, alone.
	Segs [][]byte
	// Side holds every byte of Segs that is not in body.
	Side []byte
	// Result is how the request's pod was found (or why not).
	Result Result
	// Items counts the request's spans, metric data points, log records or
	// profiles. It is set on error too: the items before the defect.
	Items int
}

// Stamp stamps one protobuf-encoded Export<Signal>ServiceRequest from the
// connection peer (see the package documentation) and counts its items, in
// one pass over the request.
//
// The output is returned as segments, appended to segs[:0]: unchanged
// ranges of body of at least 2 KiB are subslices of body (not copied);
// everything else (new lengths and attributes, short unchanged ranges) is
// appended to side[:0], and each remaining segment is a subslice of the
// returned Side.
//
// side is grown at most once, before anything is written to it, to exactly
// the bytes needed: every segment is a subslice of body or of the returned
// Side (never of the array side had when it was too small). Every segment
// has its length as capacity. side must not overlap body. body is not
// modified or retained, but the segments alias it: the caller keeps body
// and Side unchanged as long as it uses them. The returned Segs and Side
// are for the caller to reuse.
//
// An error wrapping ErrMalformed means the request's envelope or resource
// level is not valid protobuf; any other error is ctx's, which ended while
// the request was held. Nothing is to be forwarded on error.
func (s *Stamper) Stamp(ctx context.Context, sig Signal, peer Peer, body []byte, segs [][]byte, side []byte) (Stamped, error) {
	return s.stampSegments(ctx, sig, peer, body, segs, side, refMinBytes)
}

func (s *Stamper) stampSegments(ctx context.Context, sig Signal, peer Peer, body []byte, segs [][]byte, side []byte, refMin int) (Stamped, error) {
	sc := s.pool.Get().(*scratch)
	defer s.release(sc)
	var w segWriter
	w.reset(body, segs, side, refMin)
	changed, res, err := s.stamp(ctx, sig, peer, body, sc, &w)
	out := Stamped{Segs: w.segs, Side: w.side, Result: res, Items: sc.items}
	switch {
	case err != nil:
		clear(w.segs)
		out.Segs, out.Side, out.Result = w.segs[:0], w.side[:0], ""
		return out, err
	case !changed:
		clear(w.segs)
		out.Segs, out.Side = append(w.segs[:0], body), w.side[:0]
	}
	return out, nil
}

// scanner checks and counts requests: a Stamper without rules or pods.
var scanner = func() *Stamper {
	rs, err := compile(Config{})
	if err != nil {
		panic(err)
	}
	return newStamper(rs, nil, nil)
}()

// Scan checks a request's wire structure as Stamp does and counts its items,
// without stamping: what a proxy without a Stamper forwards.
func Scan(sig Signal, body []byte) (items int, err error) {
	sc := scanner.pool.Get().(*scratch)
	defer scanner.release(sc)
	var w segWriter
	_, _, err = scanner.stamp(context.Background(), sig, Peer{}, body, sc, &w)
	return sc.items, err
}

// segWriter builds the output as segments: ranges of body of at least
// refMin bytes are referenced, all other bytes are appended to side. Bytes
// are only ever appended to side, so a segment handed out is never written.
// In counting mode it only adds up the bytes side will need.
type segWriter struct {
	body     []byte
	segs     [][]byte
	side     []byte
	pend     int // start of the side bytes not yet in a segment
	refMin   int
	counting bool
	need     int // counting: bytes side needs
}

func (w *segWriter) reset(body []byte, segs [][]byte, side []byte, refMin int) {
	*w = segWriter{body: body, segs: segs[:0], side: side[:0], refMin: max(refMin, 1)}
}

// body writes body[from:to].
func (w *segWriter) copy(from, to int) {
	if to-from < w.refMin {
		w.bytes(w.body[from:to])
		return
	}
	w.flush()
	if !w.counting {
		w.segs = append(w.segs, w.body[from:to:to])
	}
}

func (w *segWriter) bytes(b []byte) {
	if w.counting {
		w.need += len(b)
		return
	}
	w.side = append(w.side, b...)
}

func (w *segWriter) varint(v int) {
	if w.counting {
		w.need += protowire.SizeVarint(uint64(v))
		return
	}
	w.side = protowire.AppendVarint(w.side, uint64(v))
}

func (w *segWriter) tag(num protowire.Number, typ protowire.Type) {
	w.varint(int(protowire.EncodeTag(num, typ)))
}

// flush ends the pending side segment.
func (w *segWriter) flush() {
	if n := len(w.side); n > w.pend && !w.counting {
		w.segs = append(w.segs, w.side[w.pend:n:n])
		w.pend = n
	}
}

// stamp plans the request and, when an attribute is added or dropped, writes
// the output to w (which ends flushed); changed reports whether it did.
func (s *Stamper) stamp(ctx context.Context, sig Signal, peer Peer, body []byte, sc *scratch, w *segWriter) (changed bool, _ Result, _ error) {
	// Every signal has the same envelope and resource shape; only profiles
	// may refer to their dictionary's string table.
	sc.plans, sc.res, sc.dels, sc.adds = sc.plans[:0], sc.res[:0], sc.dels[:0], sc.adds[:0]
	sc.profiles, sc.strsLoaded, sc.strs = sig == Profiles, false, sc.strs[:0]
	sc.sig, sc.items = sig, 0
	peer.Addr = peer.Addr.Unmap()
	ps := peerState{sig: sig, peer: peer, size: len(body)}

	for off := 0; off < len(body); {
		num, typ, n := protowire.ConsumeTag(body[off:])
		if n < 0 {
			return false, "", malformed("request: bad field tag at offset %d", off)
		}
		if num != 1 {
			m := protowire.ConsumeFieldValue(num, typ, body[off+n:])
			if m < 0 {
				return false, "", malformed("request: bad field %d at offset %d", num, off)
			}
			off += n + m
			continue
		}
		if typ != protowire.BytesType {
			return false, "", malformed("request: field 1 (resource %s) has wire type %d, want length-delimited", sig, typ)
		}
		v, m := protowire.ConsumeBytes(body[off+n:])
		if m < 0 {
			return false, "", malformed("request: resource entry %d at offset %d: bad length", len(sc.plans), off)
		}
		end := off + n + m
		p := rsPlan{span: span{tag: off, start: end - len(v), end: end}}
		if err := s.planResource(ctx, body, &p, sc, &ps); err != nil {
			return false, "", err
		}
		sc.plans = append(sc.plans, p)
		off = end
	}

	for i := range sc.plans {
		if sc.plans[i].changed() {
			changed = true
			break
		}
	}
	if !changed {
		return false, ps.result(), nil
	}
	// Count what side needs, grow it once, then write.
	w.counting, w.need = true, 0
	s.write(w, body, sc)
	w.counting = false
	w.side = slices.Grow(w.side[:0], w.need)
	s.write(w, body, sc)
	return true, ps.result(), nil
}

// write writes the planned output to w.
func (s *Stamper) write(w *segWriter, body []byte, sc *scratch) {
	last := 0
	for i := range sc.plans {
		p := &sc.plans[i]
		if !p.changed() {
			continue
		}
		w.copy(last, p.start-lenOfLenPrefix(body, p.span)) // up to and including the tag
		w.varint(newRSLen(body, p, sc))
		s.writeRS(w, body, p, sc)
		last = p.end
	}
	w.copy(last, len(body))
	w.flush()
}

// maxPooledEntries bounds the scratch kept for the next request, so one
// pathological request does not pin memory.
const maxPooledEntries = 1 << 14

// release returns sc to the pool without references to the request.
func (s *Stamper) release(sc *scratch) {
	if cap(sc.plans) > maxPooledEntries || cap(sc.res) > maxPooledEntries || cap(sc.dels) > maxPooledEntries ||
		cap(sc.adds) > maxPooledEntries || cap(sc.kvs) > maxPooledEntries || cap(sc.strs) > maxPooledEntries {
		return
	}
	clear(sc.kvs[:cap(sc.kvs)])
	clear(sc.strs[:cap(sc.strs)])
	s.pool.Put(sc)
}

// lenOfLenPrefix is the size of the length varint of field sp.
func lenOfLenPrefix(body []byte, sp span) int {
	_, _, n := protowire.ConsumeTag(body[sp.tag:])
	return sp.start - sp.tag - n
}

func sizeVarint(n int) int { return protowire.SizeVarint(uint64(n)) }

// newResLen is the new content length of Resource occurrence i of plan p.
func newResLen(p *rsPlan, sc *scratch, i int) int {
	r := sc.res[i]
	l := r.end - r.start - r.delBytes
	if i == p.resHi-1 {
		l += p.addBytes
	}
	return l
}

// newRSLen is the new content length of the Resource<Signal> of plan p.
func newRSLen(body []byte, p *rsPlan, sc *scratch) int {
	l := p.end - p.start
	if p.resHi == p.resLo {
		return l + 1 + sizeVarint(p.addBytes) + p.addBytes
	}
	for i := p.resLo; i < p.resHi; i++ {
		r := sc.res[i]
		nl := newResLen(p, sc, i)
		l += sizeVarint(nl) + nl - lenOfLenPrefix(body, r.span) - (r.end - r.start)
	}
	return l
}

func (s *Stamper) writeRS(w *segWriter, body []byte, p *rsPlan, sc *scratch) {
	if p.resHi == p.resLo { // no Resource: create one, first
		w.tag(1, protowire.BytesType)
		w.varint(p.addBytes)
		for _, a := range sc.adds[p.addLo:p.addHi] {
			w.bytes(a)
		}
		w.copy(p.start, p.end)
		return
	}
	last := p.start
	dels := sc.dels[p.delLo:p.delHi]
	for i := p.resLo; i < p.resHi; i++ {
		r := sc.res[i]
		isLast := i == p.resHi-1
		if !isLast && r.delBytes == 0 {
			continue
		}
		w.copy(last, r.start-lenOfLenPrefix(body, r.span))
		w.varint(newResLen(p, sc, i))
		from := r.start
		for len(dels) > 0 && dels[0].tag < r.end {
			w.copy(from, dels[0].tag)
			from = dels[0].end
			dels = dels[1:]
		}
		w.copy(from, r.end)
		if isLast {
			for _, a := range sc.adds[p.addLo:p.addHi] {
				w.bytes(a)
			}
		}
		last = r.end
	}
	w.copy(last, p.end)
}

// planResource parses one Resource<Signal> (its Resource only), finds the
// pod and records what to drop and add.
func (s *Stamper) planResource(ctx context.Context, body []byte, p *rsPlan, sc *scratch, ps *peerState) error {
	p.resLo = len(sc.res)
	sc.kvs = sc.kvs[:0]
	for off := p.start; off < p.end; {
		num, typ, n := protowire.ConsumeTag(body[off:p.end])
		if n < 0 {
			return malformed("resource entry %d: bad field tag at offset %d", len(sc.plans), off)
		}
		if num != 1 {
			m := protowire.ConsumeFieldValue(num, typ, body[off+n:p.end])
			if m < 0 {
				return malformed("resource entry %d: bad field %d at offset %d", len(sc.plans), num, off)
			}
			if num == 2 && typ == protowire.BytesType { // Scope<Signal>: count its items
				v, _ := protowire.ConsumeBytes(body[off+n : off+n+m])
				sc.items += countScope(sc.sig, v)
			}
			off += n + m
			continue
		}
		if typ != protowire.BytesType {
			return malformed("resource entry %d: field 1 (resource) has wire type %d, want length-delimited", len(sc.plans), typ)
		}
		v, m := protowire.ConsumeBytes(body[off+n : p.end])
		if m < 0 {
			return malformed("resource entry %d: resource at offset %d: bad length", len(sc.plans), off)
		}
		end := off + n + m
		r := resSpan{span: span{tag: off, start: end - len(v), end: end}}
		if err := s.parseResource(body, r.span, sc, len(sc.plans)); err != nil {
			return err
		}
		sc.res = append(sc.res, r)
		off = end
	}
	p.resHi = len(sc.res)
	p.delLo, p.delHi = len(sc.dels), len(sc.dels)
	p.addLo, p.addHi = len(sc.adds), len(sc.adds)

	var k resKeys
	for i := len(sc.kvs) - 1; i >= 0; i-- { // first occurrence wins: walk backwards
		kv := &sc.kvs[i]
		if bstr(kv.key) == AttrRestartCount {
			k.restart, k.restartSet = restartCount(kv.cv)
			continue
		}
		if !kv.cv.isStr || kv.cv.str == "" {
			continue
		}
		switch bstr(kv.key) {
		case AttrPodUID:
			k.uid = kv.cv.str
		case AttrPodIP:
			k.ip = kv.cv.str
		case AttrPodName:
			k.name = kv.cv.str
		case AttrNamespaceName:
			k.namespace = kv.cv.str
		case AttrContainerID:
			k.containerID = kv.cv.str
		case AttrContainerName:
			k.containerName = kv.cv.str
		}
	}
	pod, fam, untrusted, err := s.e.podOf(ctx, &k, ps)
	if err != nil {
		return err
	}
	if pod == nil {
		return nil
	}
	c := chooseContainer(pod, &k)
	ent := s.entry(pod, c, fam)
	anyDrop := false
	var conflicts uint32 // bit i: identityKeys[i] contradicts the pod
	if untrusted {
		var claims []Claim
		for j := range sc.kvs {
			kv := &sc.kvs[j]
			idx, bad := s.e.contradicts(pod, bstr(kv.key), kv.cv)
			if !bad || conflicts&(1<<idx) != 0 {
				continue
			}
			conflicts |= 1 << idx
			if s.e.onConflict != nil {
				claims = append(claims, claimOf(idx, kv.cv))
			}
		}
		if conflicts != 0 {
			s.e.report(ps, pod, claims)
			// Every occurrence of a contradicting key goes; the pod's
			// true value, if it has one, replaces them.
			for j := range sc.kvs {
				if idx := identityIndex(bstr(sc.kvs[j].key)); idx >= 0 && conflicts&(1<<idx) != 0 {
					sc.kvs[j].drop, anyDrop = true, true
				}
			}
			for idx := range numIdentityKeys {
				if conflicts&(1<<idx) == 0 {
					continue
				}
				v := identityValue(pod, idx, c, fam)
				if v == "" {
					continue
				}
				enc := ent.encoded(identityKeys[idx], v)
				sc.adds = append(sc.adds, enc)
				p.addBytes += len(enc)
			}
		}
	}
	for i := range ent.attrs {
		a := &ent.attrs[i]
		if conflicts != 0 {
			if idx := identityIndex(a.key); idx >= 0 && conflicts&(1<<idx) != 0 {
				continue // replaced above
			}
		}
		var cv clientValue
		found := false
		for j := range sc.kvs {
			if bstr(sc.kvs[j].key) == a.key {
				if !found {
					cv, found = sc.kvs[j].cv, true
				}
			}
		}
		if !s.e.r.replaces(a.key, a.value, cv) {
			continue
		}
		if found {
			for j := range sc.kvs {
				if bstr(sc.kvs[j].key) == a.key {
					sc.kvs[j].drop, anyDrop = true, true
				}
			}
		}
		sc.adds = append(sc.adds, a.enc)
		p.addBytes += len(a.enc)
	}
	p.addHi = len(sc.adds)
	if anyDrop {
		for j := range sc.kvs {
			if kv := &sc.kvs[j]; kv.drop {
				sc.dels = append(sc.dels, kv.span)
				sc.res[kv.occ].delBytes += kv.end - kv.tag
			}
		}
		p.delHi = len(sc.dels)
	}
	return nil
}

// parseResource records the attributes of one Resource message in sc.kvs.
func (s *Stamper) parseResource(body []byte, r span, sc *scratch, idx int) error {
	for off := r.start; off < r.end; {
		num, typ, n := protowire.ConsumeTag(body[off:r.end])
		if n < 0 {
			return malformed("resource entry %d: resource: bad field tag at offset %d", idx, off)
		}
		if num != 1 {
			m := protowire.ConsumeFieldValue(num, typ, body[off+n:r.end])
			if m < 0 {
				return malformed("resource entry %d: resource: bad field %d at offset %d", idx, num, off)
			}
			off += n + m
			continue
		}
		if typ != protowire.BytesType {
			return malformed("resource entry %d: resource: attribute at offset %d has wire type %d, want length-delimited", idx, off, typ)
		}
		v, m := protowire.ConsumeBytes(body[off+n : r.end])
		if m < 0 {
			return malformed("resource entry %d: resource: attribute at offset %d: bad length", idx, off)
		}
		kv := kvRef{span: span{tag: off, start: off + n + m - len(v), end: off + n + m}, occ: len(sc.res)}
		if err := parseKeyValue(body, v, &kv, sc); err != nil {
			return malformed("resource entry %d: resource: attribute at offset %d: %v", idx, off, err)
		}
		sc.kvs = append(sc.kvs, kv)
		off += n + m
	}
	return nil
}

var errBadKV = errors.New("bad KeyValue")

// parseKeyValue reads a KeyValue's key and, for a string value, the string.
// Repeated scalar fields: the last one wins, as in every protobuf decoder.
func parseKeyValue(body, b []byte, kv *kvRef, sc *scratch) error {
	var keyIdx uint64
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errBadKV
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return errBadKV
			}
			kv.key = v
			b = b[m:]
		case num == 2 && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return errBadKV
			}
			if err := parseAnyValue(body, v, &kv.cv, sc); err != nil {
				return err
			}
			b = b[m:]
		case num == 3 && typ == protowire.VarintType:
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return errBadKV
			}
			keyIdx = v
			b = b[m:]
		case num <= 3:
			return fmt.Errorf("KeyValue field %d has wire type %d", num, typ)
		default:
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return errBadKV
			}
			b = b[m:]
		}
	}
	if sc.profiles && int32(keyIdx) != 0 {
		if len(kv.key) > 0 {
			return errors.New("KeyValue has both key and key_strindex")
		}
		k, err := sc.str(body, keyIdx)
		if err != nil {
			return fmt.Errorf("key_strindex: %w", err)
		}
		kv.key = k
	}
	return nil
}

// parseAnyValue classifies an AnyValue. Like the generated decoders, a
// repeated value field merges into the previous one: the last oneof member
// wins.
func parseAnyValue(body, b []byte, cv *clientValue, sc *scratch) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errBadKV
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return errBadKV
		}
		if num >= 1 && num <= 8 {
			want := protowire.BytesType
			switch num {
			case 2, 3, 8:
				want = protowire.VarintType
			case 4:
				want = protowire.Fixed64Type
			}
			if typ != want {
				return fmt.Errorf("AnyValue field %d has wire type %d", num, typ)
			}
			switch {
			case num == 1:
				v, _ := protowire.ConsumeBytes(b[n:])
				*cv = clientValue{present: len(v) > 0, isStr: true, str: bstr(v)}
			case num == 8 && sc.profiles:
				idx, _ := protowire.ConsumeVarint(b[n:])
				v, err := sc.str(body, idx)
				if err != nil {
					return fmt.Errorf("string_value_strindex: %w", err)
				}
				*cv = clientValue{present: len(v) > 0, isStr: true, str: bstr(v)}
			case num == 3:
				v, _ := protowire.ConsumeVarint(b[n:])
				*cv = clientValue{present: true, isInt: true, i: int64(v)}
			default:
				*cv = clientValue{present: true}
			}
		}
		b = b[n+m:]
	}
	return nil
}

// str returns entry idx (an int32 on the wire) of the profiles dictionary's
// string table, loading the table on first use.
func (sc *scratch) str(body []byte, idx uint64) ([]byte, error) {
	if !sc.strsLoaded {
		sc.strsLoaded = true
		if err := sc.loadStrings(body); err != nil {
			return nil, err
		}
	}
	i := int32(idx)
	if i < 0 || int(i) >= len(sc.strs) {
		return nil, fmt.Errorf("index %d outside the string table (%d entries)", i, len(sc.strs))
	}
	return sc.strs[i], nil
}

// loadStrings collects the string_table (field 5) of every dictionary
// (field 2) of a profiles request; repeated dictionaries merge.
func (sc *scratch) loadStrings(body []byte) error {
	for off := 0; off < len(body); {
		num, typ, n := protowire.ConsumeTag(body[off:])
		if n < 0 {
			return errors.New("bad field tag in the request")
		}
		m := protowire.ConsumeFieldValue(num, typ, body[off+n:])
		if m < 0 {
			return errors.New("bad field in the request")
		}
		if num == 2 && typ == protowire.BytesType {
			d, _ := protowire.ConsumeBytes(body[off+n:])
			for len(d) > 0 {
				dn, dt, k := protowire.ConsumeTag(d)
				if k < 0 {
					return errors.New("bad field tag in the dictionary")
				}
				l := protowire.ConsumeFieldValue(dn, dt, d[k:])
				if l < 0 {
					return errors.New("bad field in the dictionary")
				}
				if dn == 5 {
					if dt != protowire.BytesType {
						return errors.New("dictionary string_table has the wrong wire type")
					}
					v, _ := protowire.ConsumeBytes(d[k:])
					sc.strs = append(sc.strs, v)
				}
				d = d[k+l:]
			}
		}
		off += n + m
	}
	return nil
}

// entry returns the encoded attributes for (pod, container, family), from
// the cache when possible.
func (s *Stamper) entry(pod *Pod, c int, fam family) *podEntry {
	h := uint64(uintptr(unsafe.Pointer(pod)))
	h ^= uint64(c+1)<<32 ^ uint64(fam)<<48
	h *= 0x9E3779B97F4A7C15
	slot := &s.cache[h>>(64-10)]
	if e := slot.Load(); e != nil && e.pod == pod && e.c == c && e.fam == fam {
		return e
	}
	attrs := s.e.r.podAttrs(pod, c, fam)
	e := &podEntry{pod: pod, c: c, fam: fam, attrs: make([]encAttr, len(attrs))}
	for i, a := range attrs {
		e.attrs[i] = encAttr{key: a.key, value: a.value, enc: encodeAttr(a.key, a.value)}
	}
	slot.Store(e)
	return e
}

// encoded is the encoding of attribute k=v: the cached one when the entry
// stamps exactly that, else a new one.
func (e *podEntry) encoded(k, v string) []byte {
	for i := range e.attrs {
		if a := &e.attrs[i]; a.key == k && a.value == v {
			return a.enc
		}
	}
	return encodeAttr(k, v)
}

// encodeAttr encodes one Resource.attributes field: KeyValue{key, AnyValue}
// with v as the AnyValue's string_value, or for a list key (listKeys) as the
// one string of its array_value.
func encodeAttr(k, v string) []byte {
	str := protowire.SizeTag(1) + protowire.SizeBytes(len(v)) // AnyValue{string_value}
	anyLen := str
	if listKeys[k] {
		arr := protowire.SizeTag(1) + protowire.SizeBytes(str)   // ArrayValue{values}
		anyLen = protowire.SizeTag(5) + protowire.SizeBytes(arr) // AnyValue{array_value}
	}
	kvLen := protowire.SizeTag(1) + protowire.SizeBytes(len(k)) + protowire.SizeTag(2) + protowire.SizeBytes(anyLen)
	b := make([]byte, 0, protowire.SizeTag(1)+protowire.SizeBytes(kvLen))
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(kvLen))
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, k)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(anyLen))
	if listKeys[k] {
		b = protowire.AppendTag(b, 5, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(protowire.SizeTag(1)+protowire.SizeBytes(str)))
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(str))
	}
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, v)
	return b
}
