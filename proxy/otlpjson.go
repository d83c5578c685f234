package proxy

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// OTLP/JSON → protobuf, without pdata.
//
// appendOTLPJSON reads an OTLP/JSON export request (traces, metrics or
// logs) and appends the protobuf encoding of the same request, in one pass
// over the JSON, driven by the schema table below (no reflection; nothing
// allocated but the output's growth, and a copy of a number written as a
// string of over 32 bytes or with escapes over 64). A nested record gets
// 1-3 bytes for its length first (reserveHints) and moves once written
// when its length takes another size: BenchmarkOTLPJSON measured no
// difference against 1 byte for every record (the moves are memmoves of
// records just written), and sizing records in a first pass would parse
// the JSON twice. It accepts what the OTLP/JSON
// encoding allows and decodes it as pdata does (the OpenTelemetry
// Collector's decoder, so the upstream sees what the Collector would):
//
//   - field names in lowerCamelCase or as in the .proto; unknown fields are
//     skipped (their values must still be JSON);
//   - traceId/spanId/parentSpanId as hex ("" is an absent ID), other bytes
//     as standard base64;
//   - integers as JSON numbers (no fraction, no exponent) or decimal
//     strings (as strconv parses them); doubles as numbers or strings
//     ("NaN", "Infinity", "-Infinity", ...); enums as integers or their
//     names;
//   - null: absent for numbers, booleans, bytes, IDs and enums; the empty
//     string for strings; an empty message for messages (as pdata: an
//     AnyValue of {"stringValue":null} is the empty string, a metric of
//     {"gauge":null} an empty gauge); no items for lists;
//   - a member of a oneof (AnyValue's values, a metric's data, a data
//     point's value) replaces an earlier one of the same object, as in
//     pdata.
//
// Where it parts from pdata (which decodes with json-iterator and is more
// lenient in some places, stricter in others):
//
//   - it accepts only JSON (RFC 8259): pdata takes some malformed input
//     (trailing bytes after the request, raw control characters after an
//     escape) that this refuses;
//   - an empty field name ("") is an unknown field; pdata ends the object
//     there, so it refuses or reads differently JSON that holds one;
//   - an integer outside its field's range is refused (json-iterator wraps
//     some 11- and 20-digit numbers silently);
//   - null is accepted for every field (pdata refuses it for numbers,
//     booleans, bytes, IDs and enums);
//   - "SEVERITY_NUMBER_TRACE" is accepted (pdata knows only its misspelt
//     "SEVERITY_NUMBER_TRACE ", which is accepted too);
//   - numbers beyond float range in unknown fields are skipped (pdata
//     refuses some);
//   - attribute values (KeyValue, AnyValue, ArrayValue, KeyValueList)
//     nested 100 deep are refused while reading, as pdata's protobuf
//     decoder refuses them: also when a later member of the same AnyValue
//     would have replaced the deep one.
//
// The output is at most len(js) + 6 × (the number of ',' in js): see
// otlpJSONBound.

// otlpJSONBound is the most appendOTLPJSON appends for a JSON request of n
// bytes holding commas ','.
//
// Why: every JSON member is "key":value with a known key of at least 3
// characters (6 bytes with quotes and colon), and its protobuf record is a
// tag of 1-2 bytes, a length of at most 4 bytes (requests are below 256
// MiB) for strings, bytes and messages, and the payload. A string's payload
// is at most its JSON text (escapes only shrink), bytes and hex IDs shrink
// (base64 4→3, hex 2→1), booleans and varints are at most their text plus
// the key's slack, except a negative enum or int32 ("kind":-1, 9 bytes →
// 11). An object's braces pay for its record header when it is below 128
// bytes; a larger one's header (up to 5 bytes) is paid by its key or, in a
// list, by its content's keys. What grows: fixed 8-byte numbers written
// with fewer digits — "sum":0 (7 bytes → 9), and list items of
// bucketCounts/explicitBounds, where "0," (2 bytes) becomes 8 bytes — and
// duplicated members. Every such item or member beyond the first comes
// after a comma and adds at most 6 bytes; the first is paid by its key (a
// list's key and brackets: at least 8 bytes for a 10-byte record). The
// fuzz target checks the bound on every input.
func otlpJSONBound(n, commas int) int { return n + 6*commas }

// Errors of appendOTLPJSON, by class (errors.Is).
var (
	errJSONSyntax = errors.New("not JSON")
	errJSONValue  = errors.New("wrong value")
	errJSONRange  = errors.New("number out of range")
	errJSONDepth  = errors.New("attribute values nested too deep")
)

type otlpJSONError struct {
	off    int
	class  error
	detail string
}

func (e *otlpJSONError) Error() string {
	return fmt.Sprintf("%v at byte %d: %s", e.class, e.off, e.detail)
}
func (e *otlpJSONError) Unwrap() error { return e.class }

// jkind is how a field's JSON value is read and its protobuf written.
type jkind uint8

const (
	jString   jkind = iota // LEN: UTF-8 string
	jBytes                 // LEN: base64
	jHexID                 // LEN: hex of size bytes
	jBool                  // varint
	jInt32                 // varint, sign-extended
	jSint32                // varint, zigzag
	jUint32                // varint
	jInt64                 // varint
	jUint64                // varint (packed lists only)
	jFixed32               // I32 from a uint32
	jFixed64               // I64 from a uint64
	jSfixed64              // I64 from an int64
	jDouble                // I64
	jEnum                  // varint from an int32 or a name
	jMessage               // LEN
)

const (
	jRepeated = 1 << iota // a JSON list: repeated records, or one packed record for numbers
	jOneof                // member of the message's (only) oneof
)

// jfield is one field of the schema: its JSON names, protobuf tag (field
// number and wire type, as its varint bytes), kind and sub-message.
type jfield struct {
	name, alt string // lowerCamelCase, .proto name ("" if the same)
	tag       [2]byte
	tagLen    uint8
	kind      jkind
	flags     uint8
	size      uint8    // hex IDs: bytes
	msg       *jmsg    // jMessage
	enum      []string // jEnum: names by number
}

// jmsg is one message of the schema.
type jmsg struct {
	fields []jfield
	// chain: KeyValue, AnyValue, ArrayValue and KeyValueList, which nest
	// without bound; pdata's protobuf decoder refuses them 100 deep.
	chain bool
	// chainMax: the deepest index this message may have (KeyValue: one
	// less, as its value is always written).
	chainMax int
	byLen    [][]uint8 // fields by the lengths of their names
	// reserve: the bytes a record of this message first takes for its
	// length (more or fewer move the record once it is written).
	reserve uint8
}

const (
	wtVarint = 0
	wtI64    = 1
	wtLen    = 2
	wtI32    = 5
)

func (f *jfield) wireType() int {
	if f.flags&jRepeated != 0 {
		switch f.kind {
		case jFixed64, jDouble, jUint64:
			return wtLen // packed
		}
	}
	switch f.kind {
	case jString, jBytes, jHexID, jMessage:
		return wtLen
	case jFixed32:
		return wtI32
	case jFixed64, jSfixed64, jDouble:
		return wtI64
	}
	return wtVarint
}

// fd builds a field: name "camelName" or "camelName/snake_name".
func fd(names string, num int, kind jkind, flags uint8, msg *jmsg) jfield {
	f := jfield{name: names, kind: kind, flags: flags, msg: msg}
	for i := range len(names) {
		if names[i] == '/' {
			f.name, f.alt = names[:i], names[i+1:]
		}
	}
	f.tagLen = uint8(len(binary.AppendUvarint(f.tag[:0], uint64(num<<3|f.wireType()))))
	return f
}

func idField(names string, num, size int) jfield {
	f := fd(names, num, jHexID, 0, nil)
	f.size = uint8(size)
	return f
}

func enumField(names string, num int, enum []string) jfield {
	f := fd(names, num, jEnum, 0, nil)
	f.enum = enum
	return f
}

var (
	spanKinds     = []string{"SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER", "SPAN_KIND_CLIENT", "SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER"}
	statusCodes   = []string{"STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"}
	temporalities = []string{"AGGREGATION_TEMPORALITY_UNSPECIFIED", "AGGREGATION_TEMPORALITY_DELTA", "AGGREGATION_TEMPORALITY_CUMULATIVE"}
	// pdata knows SEVERITY_NUMBER_TRACE only with a trailing space; both
	// spellings are accepted.
	severities = []string{"SEVERITY_NUMBER_UNSPECIFIED",
		"SEVERITY_NUMBER_TRACE", "SEVERITY_NUMBER_TRACE2", "SEVERITY_NUMBER_TRACE3", "SEVERITY_NUMBER_TRACE4",
		"SEVERITY_NUMBER_DEBUG", "SEVERITY_NUMBER_DEBUG2", "SEVERITY_NUMBER_DEBUG3", "SEVERITY_NUMBER_DEBUG4",
		"SEVERITY_NUMBER_INFO", "SEVERITY_NUMBER_INFO2", "SEVERITY_NUMBER_INFO3", "SEVERITY_NUMBER_INFO4",
		"SEVERITY_NUMBER_WARN", "SEVERITY_NUMBER_WARN2", "SEVERITY_NUMBER_WARN3", "SEVERITY_NUMBER_WARN4",
		"SEVERITY_NUMBER_ERROR", "SEVERITY_NUMBER_ERROR2", "SEVERITY_NUMBER_ERROR3", "SEVERITY_NUMBER_ERROR4",
		"SEVERITY_NUMBER_FATAL", "SEVERITY_NUMBER_FATAL2", "SEVERITY_NUMBER_FATAL3", "SEVERITY_NUMBER_FATAL4"}
)

// The schema: opentelemetry-proto's common, resource, trace, metrics and
// logs messages and the three export requests, as pdata v1.71 reads them
// (including its deprecated_scope_* fields, number 1000).
var (
	jKeyValue     jmsg
	jAnyValue     jmsg
	jArrayValue   jmsg
	jKeyValueList jmsg

	jEntityRef = jmsg{fields: []jfield{
		fd("schemaUrl/schema_url", 1, jString, 0, nil),
		fd("type", 2, jString, 0, nil),
		fd("idKeys/id_keys", 3, jString, jRepeated, nil),
		fd("descriptionKeys/description_keys", 4, jString, jRepeated, nil),
	}}
	jResource = jmsg{fields: []jfield{
		fd("attributes", 1, jMessage, jRepeated, &jKeyValue),
		fd("droppedAttributesCount/dropped_attributes_count", 2, jUint32, 0, nil),
		fd("entityRefs/entity_refs", 3, jMessage, jRepeated, &jEntityRef),
	}}
	jScope = jmsg{fields: []jfield{
		fd("name", 1, jString, 0, nil),
		fd("version", 2, jString, 0, nil),
		fd("attributes", 3, jMessage, jRepeated, &jKeyValue),
		fd("droppedAttributesCount/dropped_attributes_count", 4, jUint32, 0, nil),
	}}

	// Traces.
	jStatus = jmsg{fields: []jfield{
		fd("message", 2, jString, 0, nil),
		enumField("code", 3, statusCodes),
	}}
	jEvent = jmsg{fields: []jfield{
		fd("timeUnixNano/time_unix_nano", 1, jFixed64, 0, nil),
		fd("name", 2, jString, 0, nil),
		fd("attributes", 3, jMessage, jRepeated, &jKeyValue),
		fd("droppedAttributesCount/dropped_attributes_count", 4, jUint32, 0, nil),
	}}
	jLink = jmsg{fields: []jfield{
		idField("traceId/trace_id", 1, 16),
		idField("spanId/span_id", 2, 8),
		fd("traceState/trace_state", 3, jString, 0, nil),
		fd("attributes", 4, jMessage, jRepeated, &jKeyValue),
		fd("droppedAttributesCount/dropped_attributes_count", 5, jUint32, 0, nil),
		fd("flags", 6, jFixed32, 0, nil),
	}}
	jSpan = jmsg{fields: []jfield{
		fd("attributes", 9, jMessage, jRepeated, &jKeyValue),
		idField("traceId/trace_id", 1, 16),
		idField("spanId/span_id", 2, 8),
		idField("parentSpanId/parent_span_id", 4, 8),
		fd("name", 5, jString, 0, nil),
		enumField("kind", 6, spanKinds),
		fd("startTimeUnixNano/start_time_unix_nano", 7, jFixed64, 0, nil),
		fd("endTimeUnixNano/end_time_unix_nano", 8, jFixed64, 0, nil),
		fd("status", 15, jMessage, 0, &jStatus),
		fd("traceState/trace_state", 3, jString, 0, nil),
		fd("flags", 16, jFixed32, 0, nil),
		fd("droppedAttributesCount/dropped_attributes_count", 10, jUint32, 0, nil),
		fd("events", 11, jMessage, jRepeated, &jEvent),
		fd("droppedEventsCount/dropped_events_count", 12, jUint32, 0, nil),
		fd("links", 13, jMessage, jRepeated, &jLink),
		fd("droppedLinksCount/dropped_links_count", 14, jUint32, 0, nil),
	}}
	jScopeSpans = jmsg{fields: []jfield{
		fd("scope", 1, jMessage, 0, &jScope),
		fd("spans", 2, jMessage, jRepeated, &jSpan),
		fd("schemaUrl/schema_url", 3, jString, 0, nil),
	}}
	jResourceSpans = jmsg{fields: []jfield{
		fd("resource", 1, jMessage, 0, &jResource),
		fd("scopeSpans/scope_spans", 2, jMessage, jRepeated, &jScopeSpans),
		fd("schemaUrl/schema_url", 3, jString, 0, nil),
		fd("deprecatedScopeSpans/deprecated_scope_spans", 1000, jMessage, jRepeated, &jScopeSpans),
	}}
	jTracesRequest = jmsg{fields: []jfield{
		fd("resourceSpans/resource_spans", 1, jMessage, jRepeated, &jResourceSpans),
	}}

	// Metrics.
	jExemplar = jmsg{fields: []jfield{
		fd("filteredAttributes/filtered_attributes", 7, jMessage, jRepeated, &jKeyValue),
		fd("timeUnixNano/time_unix_nano", 2, jFixed64, 0, nil),
		fd("asDouble/as_double", 3, jDouble, jOneof, nil),
		fd("asInt/as_int", 6, jSfixed64, jOneof, nil),
		idField("spanId/span_id", 4, 8),
		idField("traceId/trace_id", 5, 16),
	}}
	jNumberDataPoint = jmsg{fields: []jfield{
		fd("attributes", 7, jMessage, jRepeated, &jKeyValue),
		fd("startTimeUnixNano/start_time_unix_nano", 2, jFixed64, 0, nil),
		fd("timeUnixNano/time_unix_nano", 3, jFixed64, 0, nil),
		fd("asDouble/as_double", 4, jDouble, jOneof, nil),
		fd("asInt/as_int", 6, jSfixed64, jOneof, nil),
		fd("exemplars", 5, jMessage, jRepeated, &jExemplar),
		fd("flags", 8, jUint32, 0, nil),
	}}
	jHistogramDataPoint = jmsg{fields: []jfield{
		fd("attributes", 9, jMessage, jRepeated, &jKeyValue),
		fd("startTimeUnixNano/start_time_unix_nano", 2, jFixed64, 0, nil),
		fd("timeUnixNano/time_unix_nano", 3, jFixed64, 0, nil),
		fd("count", 4, jFixed64, 0, nil),
		fd("sum", 5, jDouble, 0, nil),
		fd("bucketCounts/bucket_counts", 6, jFixed64, jRepeated, nil),
		fd("explicitBounds/explicit_bounds", 7, jDouble, jRepeated, nil),
		fd("exemplars", 8, jMessage, jRepeated, &jExemplar),
		fd("flags", 10, jUint32, 0, nil),
		fd("min", 11, jDouble, 0, nil),
		fd("max", 12, jDouble, 0, nil),
	}}
	jBuckets = jmsg{fields: []jfield{
		fd("offset", 1, jSint32, 0, nil),
		fd("bucketCounts/bucket_counts", 2, jUint64, jRepeated, nil),
	}}
	jExpHistogramDataPoint = jmsg{fields: []jfield{
		fd("attributes", 1, jMessage, jRepeated, &jKeyValue),
		fd("startTimeUnixNano/start_time_unix_nano", 2, jFixed64, 0, nil),
		fd("timeUnixNano/time_unix_nano", 3, jFixed64, 0, nil),
		fd("count", 4, jFixed64, 0, nil),
		fd("sum", 5, jDouble, 0, nil),
		fd("scale", 6, jSint32, 0, nil),
		fd("zeroCount/zero_count", 7, jFixed64, 0, nil),
		fd("positive", 8, jMessage, 0, &jBuckets),
		fd("negative", 9, jMessage, 0, &jBuckets),
		fd("flags", 10, jUint32, 0, nil),
		fd("exemplars", 11, jMessage, jRepeated, &jExemplar),
		fd("min", 12, jDouble, 0, nil),
		fd("max", 13, jDouble, 0, nil),
		fd("zeroThreshold/zero_threshold", 14, jDouble, 0, nil),
	}}
	jValueAtQuantile = jmsg{fields: []jfield{
		fd("quantile", 1, jDouble, 0, nil),
		fd("value", 2, jDouble, 0, nil),
	}}
	jSummaryDataPoint = jmsg{fields: []jfield{
		fd("attributes", 7, jMessage, jRepeated, &jKeyValue),
		fd("startTimeUnixNano/start_time_unix_nano", 2, jFixed64, 0, nil),
		fd("timeUnixNano/time_unix_nano", 3, jFixed64, 0, nil),
		fd("count", 4, jFixed64, 0, nil),
		fd("sum", 5, jDouble, 0, nil),
		fd("quantileValues/quantile_values", 6, jMessage, jRepeated, &jValueAtQuantile),
		fd("flags", 8, jUint32, 0, nil),
	}}
	jGauge = jmsg{fields: []jfield{
		fd("dataPoints/data_points", 1, jMessage, jRepeated, &jNumberDataPoint),
	}}
	jSum = jmsg{fields: []jfield{
		fd("dataPoints/data_points", 1, jMessage, jRepeated, &jNumberDataPoint),
		enumField("aggregationTemporality/aggregation_temporality", 2, temporalities),
		fd("isMonotonic/is_monotonic", 3, jBool, 0, nil),
	}}
	jHistogram = jmsg{fields: []jfield{
		fd("dataPoints/data_points", 1, jMessage, jRepeated, &jHistogramDataPoint),
		enumField("aggregationTemporality/aggregation_temporality", 2, temporalities),
	}}
	jExpHistogram = jmsg{fields: []jfield{
		fd("dataPoints/data_points", 1, jMessage, jRepeated, &jExpHistogramDataPoint),
		enumField("aggregationTemporality/aggregation_temporality", 2, temporalities),
	}}
	jSummary = jmsg{fields: []jfield{
		fd("dataPoints/data_points", 1, jMessage, jRepeated, &jSummaryDataPoint),
	}}
	jMetric = jmsg{fields: []jfield{
		fd("name", 1, jString, 0, nil),
		fd("description", 2, jString, 0, nil),
		fd("unit", 3, jString, 0, nil),
		fd("gauge", 5, jMessage, jOneof, &jGauge),
		fd("sum", 7, jMessage, jOneof, &jSum),
		fd("histogram", 9, jMessage, jOneof, &jHistogram),
		fd("exponentialHistogram/exponential_histogram", 10, jMessage, jOneof, &jExpHistogram),
		fd("summary", 11, jMessage, jOneof, &jSummary),
		fd("metadata", 12, jMessage, jRepeated, &jKeyValue),
	}}
	jScopeMetrics = jmsg{fields: []jfield{
		fd("scope", 1, jMessage, 0, &jScope),
		fd("metrics", 2, jMessage, jRepeated, &jMetric),
		fd("schemaUrl/schema_url", 3, jString, 0, nil),
	}}
	jResourceMetrics = jmsg{fields: []jfield{
		fd("resource", 1, jMessage, 0, &jResource),
		fd("scopeMetrics/scope_metrics", 2, jMessage, jRepeated, &jScopeMetrics),
		fd("schemaUrl/schema_url", 3, jString, 0, nil),
		fd("deprecatedScopeMetrics/deprecated_scope_metrics", 1000, jMessage, jRepeated, &jScopeMetrics),
	}}
	jMetricsRequest = jmsg{fields: []jfield{
		fd("resourceMetrics/resource_metrics", 1, jMessage, jRepeated, &jResourceMetrics),
	}}

	// Logs.
	jLogRecord = jmsg{fields: []jfield{
		fd("timeUnixNano/time_unix_nano", 1, jFixed64, 0, nil),
		fd("observedTimeUnixNano/observed_time_unix_nano", 11, jFixed64, 0, nil),
		enumField("severityNumber/severity_number", 2, severities),
		fd("severityText/severity_text", 3, jString, 0, nil),
		fd("body", 5, jMessage, 0, &jAnyValue),
		fd("attributes", 6, jMessage, jRepeated, &jKeyValue),
		fd("droppedAttributesCount/dropped_attributes_count", 7, jUint32, 0, nil),
		fd("flags", 8, jFixed32, 0, nil),
		idField("traceId/trace_id", 9, 16),
		idField("spanId/span_id", 10, 8),
		fd("eventName/event_name", 12, jString, 0, nil),
	}}
	jScopeLogs = jmsg{fields: []jfield{
		fd("scope", 1, jMessage, 0, &jScope),
		fd("logRecords/log_records", 2, jMessage, jRepeated, &jLogRecord),
		fd("schemaUrl/schema_url", 3, jString, 0, nil),
	}}
	jResourceLogs = jmsg{fields: []jfield{
		fd("resource", 1, jMessage, 0, &jResource),
		fd("scopeLogs/scope_logs", 2, jMessage, jRepeated, &jScopeLogs),
		fd("schemaUrl/schema_url", 3, jString, 0, nil),
		fd("deprecatedScopeLogs/deprecated_scope_logs", 1000, jMessage, jRepeated, &jScopeLogs),
	}}
	jLogsRequest = jmsg{fields: []jfield{
		fd("resourceLogs/resource_logs", 1, jMessage, jRepeated, &jResourceLogs),
	}}
)

// anyChainLimit is pdata's protobuf recursion limit (proto.RecursionLimit).
const anyChainLimit = 100

func init() {
	jKeyValue = jmsg{chain: true, chainMax: anyChainLimit - 2, fields: []jfield{
		fd("key", 1, jString, 0, nil),
		fd("value", 2, jMessage, 0, &jAnyValue),
		fd("keyStrindex/key_strindex", 3, jInt32, 0, nil),
	}}
	jAnyValue = jmsg{chain: true, chainMax: anyChainLimit - 1, fields: []jfield{
		fd("stringValue/string_value", 1, jString, jOneof, nil),
		fd("intValue/int_value", 3, jInt64, jOneof, nil),
		fd("boolValue/bool_value", 2, jBool, jOneof, nil),
		fd("doubleValue/double_value", 4, jDouble, jOneof, nil),
		fd("arrayValue/array_value", 5, jMessage, jOneof, &jArrayValue),
		fd("kvlistValue/kvlist_value", 6, jMessage, jOneof, &jKeyValueList),
		fd("bytesValue/bytes_value", 7, jBytes, jOneof, nil),
		fd("stringValueStrindex/string_value_strindex", 8, jInt32, jOneof, nil),
	}}
	jArrayValue = jmsg{chain: true, chainMax: anyChainLimit - 1, fields: []jfield{
		fd("values", 1, jMessage, jRepeated, &jAnyValue),
	}}
	jKeyValueList = jmsg{chain: true, chainMax: anyChainLimit - 1, fields: []jfield{
		fd("values", 1, jMessage, jRepeated, &jKeyValue),
	}}
	for m, r := range reserveHints {
		m.reserve = r
	}
	for _, m := range []*jmsg{&jTracesRequest, &jMetricsRequest, &jLogsRequest} {
		m.index()
	}
}

// reserveHints: the messages whose records are usually 128 bytes or more
// (2 bytes of length) or 16 KiB or more (3). Others take 1.
var reserveHints = map[*jmsg]uint8{
	&jSpan: 2, &jLogRecord: 2, &jMetric: 2,
	&jScopeSpans: 3, &jScopeMetrics: 3, &jScopeLogs: 3,
	&jResourceSpans: 3, &jResourceMetrics: 3, &jResourceLogs: 3,
}

func (m *jmsg) lookup(key []byte) *jfield {
	if len(key) >= len(m.byLen) {
		return nil
	}
	for _, i := range m.byLen[len(key)] {
		f := &m.fields[i]
		if string(key) == f.name || string(key) == f.alt {
			return f
		}
	}
	return nil
}

// index fills m.byLen, and that of the messages it holds.
func (m *jmsg) index() {
	if m.byLen != nil {
		return
	}
	m.byLen = make([][]uint8, 48)
	if m.reserve == 0 {
		m.reserve = 1
	}
	for i := range m.fields {
		f := &m.fields[i]
		for _, name := range []string{f.name, f.alt} {
			if name != "" && (name == f.name || len(name) != len(f.name)) {
				m.byLen[len(name)] = append(m.byLen[len(name)], uint8(i))
			}
		}
		if f.msg != nil {
			f.msg.index()
		}
	}
}

// otlpJSONDecoder holds one transcoding's state.
type otlpJSONDecoder struct {
	in  []byte
	pos int
	out []byte
	// pdataNulls makes it refuse what pdata refuses and this otherwise
	// accepts on purpose (null numbers, booleans, bytes, IDs and enums,
	// "SEVERITY_NUMBER_TRACE", numbers beyond float range in unknown
	// fields): tests use it to tell deliberate leniency from bugs.
	pdataCompat bool
}

// appendOTLPJSON appends the protobuf encoding of the OTLP/JSON export
// request js (root: jTracesRequest, jMetricsRequest or jLogsRequest) to
// dst.
func appendOTLPJSON(dst []byte, root *jmsg, js []byte) ([]byte, error) {
	d := otlpJSONDecoder{in: js, out: dst}
	return d.run(root)
}

func (d *otlpJSONDecoder) run(root *jmsg) ([]byte, error) {
	d.ws()
	if d.pos < len(d.in) && d.in[d.pos] == 'n' {
		if err := d.literal("null"); err != nil {
			return d.out, err
		}
	} else if err := d.object(root, -1); err != nil {
		return d.out, err
	}
	d.ws()
	if d.pos != len(d.in) {
		return d.out, d.fail(errJSONSyntax, "bytes after the request")
	}
	return d.out, nil
}

func (d *otlpJSONDecoder) fail(class error, format string, args ...any) error {
	return &otlpJSONError{off: d.pos, class: class, detail: fmt.Sprintf(format, args...)}
}

func (d *otlpJSONDecoder) ws() {
	for d.pos < len(d.in) {
		switch d.in[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// peek returns the next non-space byte (0 at the end).
func (d *otlpJSONDecoder) peek() byte {
	if d.pos < len(d.in) && d.in[d.pos] > ' ' {
		return d.in[d.pos]
	}
	d.ws()
	if d.pos < len(d.in) {
		return d.in[d.pos]
	}
	return 0
}

func (d *otlpJSONDecoder) literal(lit string) error {
	if len(d.in)-d.pos < len(lit) || string(d.in[d.pos:d.pos+len(lit)]) != lit {
		return d.fail(errJSONSyntax, "invalid literal, want %s", lit)
	}
	d.pos += len(lit)
	return nil
}

// unexpected is the error for a value that is not what a field takes.
func (d *otlpJSONDecoder) unexpected(f *jfield, want string) error {
	c := d.peek()
	switch {
	case c == 0:
		return d.fail(errJSONSyntax, "unexpected end of input")
	case c == '{' || c == '[' || c == '"' || c == 't' || c == 'f' || c == 'n' || c == '-' || (c >= '0' && c <= '9'):
		return d.fail(errJSONValue, "field %q takes %s", f.name, want)
	}
	return d.fail(errJSONSyntax, "unexpected character %q", c)
}

// beginLen writes a length-delimited record's tag and r bytes for its
// length, returning where its payload starts.
func (d *otlpJSONDecoder) beginLen(f *jfield, r int) int {
	var zeros [4]byte
	d.out = append(d.out, f.tag[:f.tagLen]...)
	d.out = append(d.out, zeros[:r]...)
	return len(d.out)
}

// endLen writes the length of the record whose payload starts at start
// after r bytes for the length, moving the payload when its length takes
// another number of bytes.
func (d *otlpJSONDecoder) endLen(start, r int) {
	n := len(d.out) - start
	if n < 0x80 && r == 1 {
		d.out[start-1] = byte(n)
		return
	}
	k := (bits.Len(uint(n|1)) + 6) / 7
	if k > r {
		var zeros [4]byte
		d.out = append(d.out, zeros[:k-r]...)
		copy(d.out[start+k-r:], d.out[start:start+n])
	} else if k < r {
		copy(d.out[start-r+k:], d.out[start:start+n])
		d.out = d.out[:len(d.out)-(r-k)]
	}
	b := d.out[start-r:]
	for i := range k - 1 {
		b[i] = byte(n) | 0x80
		n >>= 7
	}
	b[k-1] = byte(n)
}

// object reads a JSON object of message m (the next value is '{'),
// writing its fields. chain is the index of the enclosing chain message
// (-1: none).
func (d *otlpJSONDecoder) object(m *jmsg, chain int) error {
	switch d.peek() {
	case '{':
	case 0:
		return d.fail(errJSONSyntax, "unexpected end of input, want an object")
	case '[', '"', 't', 'f', 'n', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return d.fail(errJSONValue, "want an object")
	default:
		return d.fail(errJSONSyntax, "unexpected character %q, want an object", d.peek())
	}
	if m.chain {
		chain++
		if chain > m.chainMax {
			return d.fail(errJSONDepth, "attribute values nested %d deep (protobuf receivers refuse %d)", chain, anyChainLimit)
		}
	} else {
		chain = -1
	}
	d.pos++
	oneStart, oneEnd := -1, -1
	if d.peek() == '}' {
		d.pos++
		return nil
	}
	for {
		if d.peek() != '"' {
			return d.fail(errJSONSyntax, "want a field name")
		}
		f, err := d.field(m)
		if err != nil {
			return err
		}
		if d.peek() != ':' {
			return d.fail(errJSONSyntax, "want ':' after a field name")
		}
		d.pos++
		switch {
		case f == nil:
			if err := d.skip(); err != nil {
				return err
			}
		case f.flags&jOneof != 0:
			if d.peek() == 'n' && f.kind != jString && f.kind != jMessage {
				// null: absent, replaces nothing.
				if err := d.null(f); err != nil {
					return err
				}
				break
			}
			if oneStart >= 0 {
				copy(d.out[oneStart:], d.out[oneEnd:])
				d.out = d.out[:len(d.out)-(oneEnd-oneStart)]
			}
			oneStart = len(d.out)
			if err := d.member(f, chain); err != nil {
				return err
			}
			oneEnd = len(d.out)
		default:
			if err := d.member(f, chain); err != nil {
				return err
			}
		}
		switch d.peek() {
		case ',':
			d.pos++
		case '}':
			d.pos++
			return nil
		default:
			return d.fail(errJSONSyntax, "want ',' or '}' in an object")
		}
	}
}

// null reads a null for field f: absent, unless pdata refuses it.
func (d *otlpJSONDecoder) null(f *jfield) error {
	if d.pdataCompat {
		return d.fail(errJSONValue, "null for %q (pdata)", f.name)
	}
	return d.literal("null")
}

// member reads the value of field f and writes its records.
func (d *otlpJSONDecoder) member(f *jfield, chain int) error {
	c := d.peek()
	if f.flags&jRepeated != 0 {
		if c == 'n' {
			return d.literal("null")
		}
		if c != '[' {
			return d.unexpected(f, "a list")
		}
		d.pos++
		packed := f.kind != jMessage && f.kind != jString
		var start, tagAt int
		if packed {
			tagAt = len(d.out)
			start = d.beginLen(f, 1)
		}
		if d.peek() == ']' {
			d.pos++
		} else {
			for {
				var err error
				if packed {
					err = d.scalar(f)
				} else {
					err = d.single(f, chain)
				}
				if err != nil {
					return err
				}
				c := d.peek()
				d.pos++
				if c == ']' {
					break
				}
				if c != ',' {
					d.pos--
					return d.fail(errJSONSyntax, "want ',' or ']' in a list")
				}
			}
		}
		if packed {
			if len(d.out) == start {
				d.out = d.out[:tagAt]
			} else {
				d.endLen(start, 1)
			}
		}
		return nil
	}
	if c == 'n' && f.kind != jString && f.kind != jMessage {
		return d.null(f)
	}
	return d.single(f, chain)
}

// single reads one value of field f (a list item, or a singular field's
// value) and writes its record.
func (d *otlpJSONDecoder) single(f *jfield, chain int) error {
	c := d.peek()
	switch f.kind {
	case jMessage:
		r := int(f.msg.reserve)
		start := d.beginLen(f, r)
		if c == 'n' {
			// pdata: an empty message (which still counts for depth).
			if f.msg.chain && chain+1 > f.msg.chainMax {
				return d.fail(errJSONDepth, "attribute values nested %d deep (protobuf receivers refuse %d)", chain+1, anyChainLimit)
			}
			if err := d.literal("null"); err != nil {
				return err
			}
		} else {
			if c != '{' {
				return d.unexpected(f, "an object")
			}
			if err := d.object(f.msg, chain); err != nil {
				return err
			}
		}
		d.endLen(start, r)
		return nil
	case jString:
		if c == 'n' {
			d.out = append(d.out, f.tag[:f.tagLen]...)
			d.out = append(d.out, 0)
			return d.literal("null")
		}
		if c != '"' {
			return d.unexpected(f, "a string")
		}
		return d.stringRecord(f)
	case jHexID, jBytes:
		if c != '"' {
			return d.unexpected(f, "a string")
		}
		raw, esc, err := d.scanString()
		if err != nil {
			return err
		}
		if esc {
			return d.fail(errJSONValue, "field %q: escapes in %s", f.name, encodingName(f))
		}
		if f.kind == jHexID {
			if len(raw) == 0 {
				return nil // an absent ID
			}
			if len(raw) != 2*int(f.size) {
				return d.fail(errJSONValue, "field %q: %d hex digits, want %d", f.name, len(raw), 2*f.size)
			}
			d.out = append(d.out, f.tag[:f.tagLen]...)
			d.out = append(d.out, f.size)
			n := len(d.out)
			d.out = append(d.out, raw[:f.size]...) // room
			if _, err := hex.Decode(d.out[n:], raw); err != nil {
				return d.fail(errJSONValue, "field %q: %v", f.name, err)
			}
			return nil
		}
		start := d.beginLen(f, 1)
		n := base64.StdEncoding.DecodedLen(len(raw))
		d.out = append(d.out, raw[:n]...) // room
		m, err := base64.StdEncoding.Decode(d.out[start:], raw)
		if err != nil {
			return d.fail(errJSONValue, "field %q: base64: %v", f.name, err)
		}
		d.out = d.out[:start+m]
		d.endLen(start, 1)
		return nil
	}
	d.out = append(d.out, f.tag[:f.tagLen]...)
	return d.scalar(f)
}

func encodingName(f *jfield) string {
	if f.kind == jHexID {
		return "hex"
	}
	return "base64"
}

// scalar reads a number, boolean or enum of field f and writes its value
// (without tag).
func (d *otlpJSONDecoder) scalar(f *jfield) error {
	c := d.peek()
	var buf [64]byte
	switch f.kind {
	case jBool:
		switch c {
		case 't':
			d.out = append(d.out, 1)
			return d.literal("true")
		case 'f':
			d.out = append(d.out, 0)
			return d.literal("false")
		}
		return d.unexpected(f, "true or false")
	case jDouble:
		var v float64
		var err error
		switch {
		case c == '"':
			var s []byte
			if s, err = d.stringValue(&buf); err != nil {
				return err
			}
			v, err = strconv.ParseFloat(string(s), 64)
		case c == '-' || (c >= '0' && c <= '9'):
			var tok []byte
			if tok, _, err = d.number(); err != nil {
				return err
			}
			v, err = strconv.ParseFloat(string(tok), 64)
		default:
			return d.unexpected(f, "a number")
		}
		if err != nil {
			return d.fail(errJSONValue, "field %q: %v", f.name, err)
		}
		d.out = binary.LittleEndian.AppendUint64(d.out, math.Float64bits(v))
		return nil
	case jEnum:
		if c == '"' {
			s, err := d.stringValue(&buf)
			if err != nil {
				return err
			}
			if &f.enum[0] == &severities[0] {
				switch string(s) {
				case "SEVERITY_NUMBER_TRACE ":
					d.out = append(d.out, 1)
					return nil
				case "SEVERITY_NUMBER_TRACE":
					if d.pdataCompat {
						return d.fail(errJSONValue, "field %q: unknown name %q (pdata)", f.name, string(s))
					}
				}
			}
			for i, name := range f.enum {
				if string(s) == name {
					d.out = append(d.out, byte(i))
					return nil
				}
			}
			return d.fail(errJSONValue, "field %q: unknown name %q", f.name, string(s))
		}
	}
	signed := f.kind == jInt32 || f.kind == jSint32 || f.kind == jInt64 || f.kind == jSfixed64 || f.kind == jEnum
	size := 64
	switch f.kind {
	case jInt32, jSint32, jUint32, jFixed32, jEnum:
		size = 32
	}
	var u uint64
	var err error
	switch {
	case c == '"':
		var s []byte
		if s, err = d.stringValue(&buf); err != nil {
			return err
		}
		u, err = parseDecimal(s, signed, size)
	case c == '-' || (c >= '0' && c <= '9'):
		var tok []byte
		var isInt bool
		if tok, isInt, err = d.number(); err != nil {
			return err
		}
		if !isInt {
			return d.fail(errJSONValue, "field %q takes an integer, not %s", f.name, tok)
		}
		if !signed && tok[0] == '-' {
			return d.fail(errJSONValue, "field %q takes an unsigned integer, not %s", f.name, tok)
		}
		u, err = parseDecimal(tok, signed, size)
		if err != nil {
			return d.fail(errJSONRange, "field %q: %s", f.name, tok)
		}
	default:
		return d.unexpected(f, "an integer")
	}
	if err != nil {
		return d.fail(errJSONValue, "field %q: %v", f.name, err)
	}
	switch f.kind {
	case jFixed32:
		d.out = binary.LittleEndian.AppendUint32(d.out, uint32(u))
	case jFixed64, jSfixed64:
		d.out = binary.LittleEndian.AppendUint64(d.out, u)
	case jSint32:
		v := int32(u)
		d.out = binary.AppendUvarint(d.out, uint64(uint32(v<<1)^uint32(v>>31)))
	case jInt32, jEnum:
		d.out = binary.AppendUvarint(d.out, uint64(int64(int32(u))))
	default:
		d.out = binary.AppendUvarint(d.out, u)
	}
	return nil
}

// parseDecimal parses s as strconv.ParseInt/ParseUint(s, 10, size) do,
// returning the value's bits.
func parseDecimal(s []byte, signed bool, size int) (uint64, error) {
	if len(s) > 0 && len(s) <= 20 { // a sign and 19 digits: below 1e19 < 2^64
		neg := s[0] == '-'
		i := 0
		if neg {
			i = 1
		}
		if i < len(s) && len(s)-i <= 19 && (signed || !neg) {
			var v uint64
			for ; i < len(s); i++ {
				c := s[i] - '0'
				if c > 9 {
					break
				}
				v = v*10 + uint64(c)
			}
			if i == len(s) {
				switch {
				case size == 64 && !neg:
					if signed && v > math.MaxInt64 {
						break
					}
					return v, nil
				case size == 64:
					if v > 1<<63 {
						break
					}
					return uint64(-int64(v)), nil
				case signed && !neg && v <= math.MaxInt32:
					return v, nil
				case signed && neg && v <= -math.MinInt32:
					return uint64(-int64(v)), nil
				case !signed && v <= math.MaxUint32:
					return v, nil
				}
			}
		}
	}
	if signed {
		v, err := strconv.ParseInt(string(s), 10, size)
		return uint64(v), err
	}
	return strconv.ParseUint(string(s), 10, size)
}

// number scans a JSON number, reporting whether it is an integer (no
// fraction or exponent).
func (d *otlpJSONDecoder) number() ([]byte, bool, error) {
	in, i := d.in, d.pos
	start := i
	isInt := true
	if i < len(in) && in[i] == '-' {
		i++
	}
	switch {
	case i < len(in) && in[i] == '0':
		i++
	case i < len(in) && in[i] >= '1' && in[i] <= '9':
		for i < len(in) && in[i] >= '0' && in[i] <= '9' {
			i++
		}
	default:
		d.pos = i
		return nil, false, d.fail(errJSONSyntax, "invalid number")
	}
	if i < len(in) && in[i] == '.' {
		isInt = false
		i++
		if i >= len(in) || in[i] < '0' || in[i] > '9' {
			d.pos = i
			return nil, false, d.fail(errJSONSyntax, "invalid number")
		}
		for i < len(in) && in[i] >= '0' && in[i] <= '9' {
			i++
		}
	}
	if i < len(in) && (in[i] == 'e' || in[i] == 'E') {
		isInt = false
		i++
		if i < len(in) && (in[i] == '+' || in[i] == '-') {
			i++
		}
		if i >= len(in) || in[i] < '0' || in[i] > '9' {
			d.pos = i
			return nil, false, d.fail(errJSONSyntax, "invalid number")
		}
		for i < len(in) && in[i] >= '0' && in[i] <= '9' {
			i++
		}
	}
	d.pos = i
	return in[start:i], isInt, nil
}

// strSafe marks the bytes a string's fast scan passes over.
var strSafe = func() (t [256]bool) {
	for i := 0x20; i < 256; i++ {
		t[i] = i != '"' && i != '\\'
	}
	return t
}()

// scanString scans a JSON string (at '"'), returning its raw content and
// whether it holds escapes.
func (d *otlpJSONDecoder) scanString() ([]byte, bool, error) {
	in := d.in
	i := d.pos + 1
	start := i
	esc := false
	for {
		// Eight bytes at a time up to the first '"', '\\' or control
		// character (the lowest byte flagged is exact), then byte by byte.
		const lo, hi = 0x0101010101010101, 0x8080808080808080
		for i+8 <= len(in) {
			x := binary.LittleEndian.Uint64(in[i:])
			q := x ^ (lo * '"')
			b := x ^ (lo * '\\')
			if m := ((q - lo) &^ q) | ((b - lo) &^ b) | ((x - lo*0x20) &^ x); m&hi != 0 {
				i += bits.TrailingZeros64(m&hi) / 8
				break
			}
			i += 8
		}
		for i < len(in) && strSafe[in[i]] {
			i++
		}
		if i >= len(in) {
			d.pos = i
			return nil, false, d.fail(errJSONSyntax, "unterminated string")
		}
		switch c := in[i]; {
		case c == '"':
			d.pos = i + 1
			return in[start:i], esc, nil
		case c == '\\':
			esc = true
			if i+1 >= len(in) {
				d.pos = i
				return nil, false, d.fail(errJSONSyntax, "unterminated string")
			}
			switch in[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(in) || !isHex4(in[i+2:i+6]) {
					d.pos = i
					return nil, false, d.fail(errJSONSyntax, "invalid \\u escape")
				}
				i += 6
			default:
				d.pos = i
				return nil, false, d.fail(errJSONSyntax, "invalid escape")
			}
		default:
			d.pos = i
			return nil, false, d.fail(errJSONSyntax, "control character in a string")
		}
	}
}

func isHex4(b []byte) bool {
	for _, c := range b[:4] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a':
			r = r<<4 | rune(c-'a'+10)
		default:
			r = r<<4 | rune(c-'A'+10)
		}
	}
	return r
}

// unescape appends the decoded form of a scanned string's raw content,
// as json-iterator (pdata) decodes it: a surrogate escape that does not
// pair with the next escape becomes U+FFFD, and is not re-paired.
func unescape(dst, raw []byte) []byte {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			j := i + 1
			for j < len(raw) && raw[j] != '\\' {
				j++
			}
			dst = append(dst, raw[i:j]...)
			i = j
			continue
		}
		e := raw[i+1]
		i += 2
		switch e {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(raw[i:])
			i += 4
			if !utf16.IsSurrogate(r) {
				dst = utf8.AppendRune(dst, r)
				continue
			}
			if i+1 < len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
				r2 := hex4(raw[i+2:])
				i += 6
				if comb := utf16.DecodeRune(r, r2); comb != utf8.RuneError {
					dst = utf8.AppendRune(dst, comb)
				} else {
					dst = utf8.AppendRune(dst, r)  // U+FFFD
					dst = utf8.AppendRune(dst, r2) // itself, or U+FFFD
				}
				continue
			}
			dst = utf8.AppendRune(dst, utf8.RuneError)
		default: // '"', '\\', '/'
			dst = append(dst, e)
		}
	}
	return dst
}

// stringRecord reads a string (at '"') and writes it as field f's record.
func (d *otlpJSONDecoder) stringRecord(f *jfield) error {
	raw, esc, err := d.scanString()
	if err != nil {
		return err
	}
	d.out = append(d.out, f.tag[:f.tagLen]...)
	if !esc {
		d.out = binary.AppendUvarint(d.out, uint64(len(raw)))
		d.out = append(d.out, raw...)
		return nil
	}
	d.out = append(d.out, 0)
	start := len(d.out)
	d.out = unescape(d.out, raw)
	d.endLen(start, 1)
	return nil
}

// stringValue reads a string (at '"') and returns its decoded content,
// in buf when it holds escapes and fits.
func (d *otlpJSONDecoder) stringValue(buf *[64]byte) ([]byte, error) {
	raw, esc, err := d.scanString()
	if err != nil || !esc {
		return raw, err
	}
	if len(raw) <= len(buf) {
		return unescape(buf[:0], raw), nil // unescaping only shrinks
	}
	return unescape(nil, raw), nil
}

// field reads a field name and returns m's field of that name (nil:
// unknown).
func (d *otlpJSONDecoder) field(m *jmsg) (*jfield, error) {
	raw, esc, err := d.scanString()
	if err != nil || !esc {
		return m.lookup(raw), err
	}
	if len(raw) > 64 {
		return nil, nil // longer than any known name, even unescaped
	}
	var buf [64]byte
	return m.lookup(unescape(buf[:0], raw)), nil
}

// maxSkipDepth is how deep skipped values may nest (json-iterator's limit,
// so pdata's).
const maxSkipDepth = 10000

// skip reads and checks any JSON value, writing nothing.
func (d *otlpJSONDecoder) skip() error {
	var open [maxSkipDepth/64 + 1]uint64 // 1: an array is open at that depth
	depth := 0
	for {
		// A value.
		switch c := d.peek(); {
		case c == '{' || c == '[':
			if depth == maxSkipDepth {
				return d.fail(errJSONSyntax, "JSON nested deeper than %d", maxSkipDepth)
			}
			if c == '[' {
				open[depth/64] |= 1 << (depth % 64)
			} else {
				open[depth/64] &^= 1 << (depth % 64)
			}
			depth++
			d.pos++
			end := byte('}')
			if c == '[' {
				end = ']'
			}
			if d.peek() == end {
				d.pos++
				depth--
				goto next
			}
			if c == '{' {
				if err := d.skipKey(); err != nil {
					return err
				}
			}
			continue
		case c == '"':
			if _, _, err := d.scanString(); err != nil {
				return err
			}
		case c == 't':
			if err := d.literal("true"); err != nil {
				return err
			}
		case c == 'f':
			if err := d.literal("false"); err != nil {
				return err
			}
		case c == 'n':
			if err := d.literal("null"); err != nil {
				return err
			}
		case c == '-' || (c >= '0' && c <= '9'):
			tok, _, err := d.number()
			if err != nil {
				return err
			}
			if d.pdataCompat && skippedNumberRefused(tok) {
				return d.fail(errJSONValue, "number %s beyond float range (pdata)", tok)
			}
		case c == 0:
			return d.fail(errJSONSyntax, "unexpected end of input")
		default:
			return d.fail(errJSONSyntax, "unexpected character %q", c)
		}
	next:
		// After a value: close what ends here, or go on to the next item.
		for {
			if depth == 0 {
				return nil
			}
			inArray := open[(depth-1)/64]&(1<<((depth-1)%64)) != 0
			c := d.peek()
			if c == ',' {
				d.pos++
				if !inArray {
					if err := d.skipKey(); err != nil {
						return err
					}
				}
				break
			}
			if (inArray && c == ']') || (!inArray && c == '}') {
				d.pos++
				depth--
				continue
			}
			return d.fail(errJSONSyntax, "want ',' or the end of a list or object")
		}
	}
}

// skipKey reads `"name":`.
func (d *otlpJSONDecoder) skipKey() error {
	if d.peek() != '"' {
		return d.fail(errJSONSyntax, "want a field name")
	}
	if _, _, err := d.scanString(); err != nil {
		return err
	}
	if d.peek() != ':' {
		return d.fail(errJSONSyntax, "want ':' after a field name")
	}
	d.pos++
	return nil
}

// skippedNumberRefused: json-iterator refuses skipped numbers beyond
// float64's range when they hold '-', 'e' or 'E' and do not begin with 0.
func skippedNumberRefused(tok []byte) bool {
	if tok[0] == '0' {
		return false
	}
	for _, c := range tok {
		if c == '-' || c == 'e' || c == 'E' {
			_, err := strconv.ParseFloat(string(tok), 64)
			return err != nil
		}
	}
	return false
}
