from trafficsiam.cli import main

main(prog_name="trafficsiam")
