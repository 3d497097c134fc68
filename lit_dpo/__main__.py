from lit_dpo.cli import main

main()
