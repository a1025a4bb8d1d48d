module acme-gateway.local/loadgen

go 1.22
