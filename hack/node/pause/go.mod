module trainwright.dev/hack/node/pause

go 1.26
