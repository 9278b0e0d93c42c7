module edgetrace/testsvc

go 1.21
