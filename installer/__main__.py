from installer.cli.main import main

main()
