module edgetrace/tracegen

go 1.22
