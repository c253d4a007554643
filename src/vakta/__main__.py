from vakta.cli import main

main()
