// Command loadgen sends OTLP load and prints a JSON summary to stdout.
//
//	loadgen --endpoint 127.0.0.1:4317 --requests 1000 --items 512 --attrs 8 \
//	    --conns 4 --source-ip 127.0.0.11,127.0.0.12
//
// It exits non-zero when any request failed, unless --allow-failures.
package main
