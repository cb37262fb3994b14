use super::*;

fn fmt(src: &str) -> String {
    match format(src) {
        Ok(out) => {
            assert_eq!(
                format(&out).unwrap(),
                out,
                "formatting is not idempotent on:\n{out}"
            );
            out
        }
        Err(e) => panic!("{e:?}"),
    }
}

#[test]
fn attributes_are_aligned_and_blocks_expanded() {
    let src =
        "resource a \"t.x\" { path = \"p\"\n  content=1 limits {memory_mb=3 timeout_s=4}\n}\n";
    assert_eq!(
        fmt(src),
        "resource a \"t.x\" {\n  path    = \"p\"\n  content = 1\n  limits {\n    memory_mb = 3\n    timeout_s = 4\n  }\n}\n"
    );
}

#[test]
fn a_one_line_body_with_one_attribute_stays_on_its_line() {
    assert_eq!(
        fmt("environment prod {\n  vars {   a=1 }\n}\nenvironment dev {\n}\n"),
        "environment prod {\n  vars { a = 1 }\n}\n\nenvironment dev {}\n"
    );
}

#[test]
fn items_are_one_blank_line_apart_and_one_liners_may_stay_together() {
    let src = "pipeline \"p\"\nvar a = 1\nvar bb: string = \"x\" sensitive\n\n\n\noutput o = a\nflow {\n}\nplugin p {}";
    assert_eq!(
        fmt(src),
        "pipeline \"p\"\nvar a          = 1\nvar bb: string = \"x\" sensitive\n\noutput o = a\n\nflow {}\n\nplugin p {}\n"
    );
}

#[test]
fn comments_stay_where_they_are() {
    let src = "# head\n\n# about r\nresource r \"t.x\" { # open\n  a = 1 # after a\n  # own line\n\n\n  bb = [ 1, # one\n 2 ]\n} # end\n# tail\n";
    assert_eq!(
        fmt(src),
        "# head\n\n# about r\nresource r \"t.x\" { # open\n  a = 1 # after a\n  # own line\n\n  bb = [1, # one\n    2]\n} # end\n\n# tail\n"
    );
}

#[test]
fn comments_before_an_item_go_with_it() {
    assert_eq!(
        fmt("environment a {}\n# b\nenvironment b {}\n"),
        "environment a {}\n\n# b\nenvironment b {}\n"
    );
}

#[test]
fn lists_maps_and_calls_keep_their_line_breaks() {
    let src = "resource r \"t.x\" {\nlist = [\n\"a\",\n    \"b\",\n]\nmap = {a=1, b : [ 2 ]}\ncall = f( x , y [ 0 ] .z )\nnested = f([\n{\nk = 1\n}\n])\n}\n";
    assert_eq!(
        fmt(src),
        "resource r \"t.x\" {\n  list = [\n    \"a\",\n    \"b\",\n  ]\n  map    = { a = 1, b: [2] }\n  call   = f(x, y[0].z)\n  nested = f([\n    {\n      k = 1\n    }\n  ])\n}\n"
    );
}

#[test]
fn heredoc_bodies_and_strings_are_untouched() {
    let src = "resource r \"t.x\" {\n      a = <<-EOT\n   keep   this\n\t  ${ x }  \n      EOT\n   b   =   \"  ${ f( 1 ,2) }  \"\n}\n";
    assert_eq!(
        fmt(src),
        "resource r \"t.x\" {\n  a = <<-EOT\n   keep   this\n\t  ${ x }  \n      EOT\n  b = \"  ${ f( 1 ,2) }  \"\n}\n"
    );
}

#[test]
fn a_file_with_syntax_errors_is_not_formatted() {
    assert!(matches!(
        format("resource r \"t.x\" {"),
        Err(FormatError::Syntax(_))
    ));
}

#[test]
fn line_breaks_outside_brackets_are_joined() {
    assert_eq!(
        fmt("output\no\n=\nvpc\n.id\nsensitive\n"),
        "output o = vpc.id sensitive\n"
    );
}

#[test]
fn a_line_comment_inside_a_value_keeps_its_line_end() {
    let out = fmt("resource r \"t.x\" {\n  a = # why\n  1\n  b /* c */ = 2\n}\n");
    assert_eq!(
        out,
        "resource r \"t.x\" {\n  a = # why\n    1\n  b /* c */ = 2\n}\n"
    );
}

#[test]
fn the_examples_are_formatted() {
    for (name, src) in [
        (
            "aws-env",
            include_str!("../../../examples/aws-env.pipeline"),
        ),
        (
            "local-files",
            include_str!("../../../examples/local-files.pipeline"),
        ),
    ] {
        assert_eq!(
            format(src).unwrap(),
            src,
            "examples/{name}.pipeline is not formatted: run stackpipe fmt examples"
        );
    }
}

#[test]
fn the_entries_of_a_map_over_several_lines_are_aligned() {
    let src = "resource r \"t.x\" {\n  tags = {\n    Name = \"web\"\n    environment = env.name\n\n    a = { x = 1, yy = 2 }\n    nested = {\n      k = 1\n      kkk = 2\n    }\n    z = 3\n  }\n}\n";
    assert_eq!(
        fmt(src),
        "resource r \"t.x\" {\n  tags = {\n    Name        = \"web\"\n    environment = env.name\n\n    a      = { x = 1, yy = 2 }\n    nested = {\n      k   = 1\n      kkk = 2\n    }\n    z = 3\n  }\n}\n"
    );
}
