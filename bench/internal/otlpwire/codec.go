package otlpwire

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
)

// Frame is a message the raw codec moves without decoding. Marshal sends
// Bytes as they are; Unmarshal leaves the received bytes in Bytes.
type Frame struct {
	Bytes []byte
}

// Codec is a gRPC codec (v2) that passes protobuf bytes through. Use it with
// grpc.ForceServerCodecV2 / grpc.ForceCodecV2: the content-subtype stays
// "proto" on the wire, so peers see ordinary OTLP.
type Codec struct{}

var _ encoding.CodecV2 = Codec{}

// Name is "proto" so that a peer negotiating by content-subtype is served.
func (Codec) Name() string { return "proto" }

// Marshal returns the frame's bytes without copying.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	switch m := v.(type) {
	case *Frame:
		return mem.BufferSlice{mem.SliceBuffer(m.Bytes)}, nil
	case *[]byte:
		return mem.BufferSlice{mem.SliceBuffer(*m)}, nil
	}
	return nil, fmt.Errorf("otlpwire codec: cannot marshal %T", v)
}

// Unmarshal copies the received message into the frame (one copy: the
// gRPC buffers are recycled after the call returns).
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	switch m := v.(type) {
	case *Frame:
		m.Bytes = data.Materialize()
		return nil
	case *[]byte:
		*m = data.Materialize()
		return nil
	}
	return fmt.Errorf("otlpwire codec: cannot unmarshal into %T", v)
}
