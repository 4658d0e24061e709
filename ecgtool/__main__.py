from ecgtool.cli import main

main()
