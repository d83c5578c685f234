# syntax=docker/dockerfile:1
# A static, non-root podstamp image.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -tags grpcnotrace -ldflags "-s -w -X main.version=${VERSION}" -o /out/podstamp ./cmd/podstamp

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/podstamp /podstamp
USER 65532:65532
EXPOSE 4317 4318 10291
ENTRYPOINT ["/podstamp"]
