//! The systemd rules the unit reader follows, one test per documented rule (the module
//! documentation cites the manual pages).

use super::*;

fn unit(text: &str) -> Unit {
    parse_unit("/etc/systemd/system/x.service", text, &[])
}

fn cmd(text: &str, files: &[(&str, Option<&str>)]) -> Result<Command, UnitError> {
    let env: EnvFiles = files
        .iter()
        .map(|(p, t)| (p.to_string(), t.map(str::to_string)))
        .collect();
    command(&unit(text), &env)
}

fn args(c: &Command) -> Vec<&str> {
    c.args.iter().map(|w| w.text.as_str()).collect()
}

fn env_of(text: &str) -> Vec<(String, String)> {
    let (vars, _) = parse_env_file("/e", text);
    vars.into_iter().map(|(n, v)| (n, v.value)).collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn continuation_joins_lines_with_a_space_and_skips_comment_lines_inside() {
    let c = cmd(
        "[Service]\nExecStart=/bin/x \\\n  --a=1 \\\n# a comment\n; another\n  --b=2\n",
        &[],
    )
    .unwrap();
    assert_eq!(c.path.text, "/bin/x");
    assert_eq!(args(&c), ["--a=1", "--b=2"]);
    // Each word knows its physical line.
    assert_eq!(c.args[0].origin.line, 3);
    assert_eq!(c.args[1].origin.line, 6);
}

#[test]
fn an_escaped_backslash_at_the_end_does_not_continue() {
    let u = unit("[Service]\nExecStart=/bin/x a\\\\\nUser=k8s\n");
    assert_eq!(u.service_value("User").unwrap().value, "k8s");
    let c = command(&u, &EnvFiles::new()).unwrap();
    assert_eq!(args(&c), ["a\\"]);
}

#[test]
fn comments_sections_and_keys() {
    let u = unit(
        "# top\n[Unit]\nDescription = x y \n\n[Service]\n  ; indented comment\nUser=k8s\nnot a directive\n",
    );
    assert_eq!(u.directives.len(), 2);
    assert_eq!(u.directives[0].key, "Description");
    assert_eq!(u.directives[0].value, "x y");
    assert_eq!(u.directives[1].section, "Service");
    assert_eq!(u.warnings.len(), 1);
    assert_eq!(u.warnings[0].0.line, 8);
}

#[test]
fn quotes_open_anywhere_in_a_word_and_are_removed() {
    let c = cmd(
        r#"[Service]
ExecStart=/bin/x --allowed-names="" --prefix="X-Remote-Extra-" "a b" 'c "d"' e"f g"h --sp=a\sb --tab=\t"#,
        &[],
    )
    .unwrap();
    assert_eq!(
        args(&c),
        [
            "--allowed-names=",
            "--prefix=X-Remote-Extra-",
            "a b",
            "c \"d\"",
            "ef gh",
            "--sp=a b",
            "--tab=\t"
        ]
    );
}

#[test]
fn unknown_escapes_and_unclosed_quotes_are_refused_with_the_line() {
    let e = cmd("[Service]\nExecStart=/bin/x \\\n --a=\\q\n", &[]).unwrap_err();
    assert_eq!(e.origin.line, 3, "{e}");
    assert!(e.message.contains("\\q"), "{e}");
    let e = cmd("[Service]\nExecStart=/bin/x --a=\"b\n", &[]).unwrap_err();
    assert!(e.message.contains("never closed"), "{e}");
    assert!(e.to_string().contains("x.service:2"), "{e}");
}

#[test]
fn c_escapes() {
    let c = cmd(
        r#"[Service]
ExecStart=/bin/x \x41 \101 \u00e9 \\ \" a\ b"#,
        &[],
    )
    .unwrap();
    assert_eq!(args(&c), ["A", "A", "é", "\\", "\"", "a b"]);
}

#[test]
fn dollar_var_splits_at_whitespace_and_braced_var_is_one_word() {
    let c = cmd(
        "[Service]\nEnvironment=\"ARGS=--a=1  --b='x y'\" ONE=solo\nExecStart=/bin/x $ARGS ${ARGS} --c=${ONE} --d=$ONE $$ONE\n",
        &[],
    )
    .unwrap();
    assert_eq!(
        args(&c),
        [
            "--a=1",
            "--b=x y",
            "--a=1  --b='x y'",
            "--c=solo",
            "--d=$ONE",
            "$ONE"
        ]
    );
    assert!(c.references.iter().all(|(_, defined, _)| *defined));
}

#[test]
fn undefined_variables_expand_to_nothing() {
    let c = cmd(
        "[Service]\nExecStart=/bin/x $UNSET --a=${UNSET} ${UNSET} --b=${UNSET:-dflt} --c=${ONE:+alt}\nEnvironment=ONE=1\n",
        &[],
    )
    .unwrap();
    // `$UNSET` is zero words, `${UNSET}` alone is one empty word.
    assert_eq!(args(&c), ["--a=", "", "--b=dflt", "--c=alt"]);
    let undefined: Vec<&str> = c
        .references
        .iter()
        .filter(|(_, d, _)| !d)
        .map(|(n, _, _)| n.as_str())
        .collect();
    assert_eq!(undefined, ["UNSET", "UNSET", "UNSET", "UNSET"]);
}

#[test]
fn colon_prefix_disables_substitution_and_other_prefixes_are_recorded() {
    let c = cmd("[Service]\nExecStart=:/bin/x $A ${B}\n", &[]).unwrap();
    assert_eq!(args(&c), ["$A", "${B}"]);
    assert!(c.prefixes.no_substitution);
    let c = cmd("[Service]\nExecStart=-+/bin/x --a\n", &[]).unwrap();
    assert!(c.prefixes.ignore_failure);
    assert_eq!(c.prefixes.privileged.as_deref(), Some("+"));
    assert_eq!(c.path.text, "/bin/x");
    let c = cmd(
        "[Service]\nExecStart=@/bin/hyperkube kube-apiserver --a\n",
        &[],
    )
    .unwrap();
    assert!(c.prefixes.argv0);
    assert_eq!(args(&c), ["--a"]);
    let c = cmd("[Service]\nExecStart=!!/bin/x\n", &[]).unwrap();
    assert_eq!(c.prefixes.privileged.as_deref(), Some("!!"));
    assert!(cmd("[Service]\nExecStart=|/bin/x\n", &[]).is_err());
    assert!(cmd("[Service]\nExecStart=@/bin/x\n", &[]).is_err());
}

#[test]
fn environment_assignments_follow_the_quoting_rules_and_later_ones_win() {
    let c = cmd(
        "[Service]\nEnvironment=\"VAR1=word1 word2\" VAR2=word3 \"VAR3=$word 5 6\"\nEnvironment=VAR2=again bad-name=x\nExecStart=/bin/x ${VAR1} ${VAR2} ${VAR3}\n",
        &[],
    )
    .unwrap();
    assert_eq!(args(&c), ["word1 word2", "again", "$word 5 6"]);
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    // The empty assignment resets the list.
    let c = cmd(
        "[Service]\nEnvironment=A=1\nEnvironment=\nExecStart=/bin/x --a=${A}\n",
        &[],
    )
    .unwrap();
    assert_eq!(args(&c), ["--a="]);
}

#[test]
fn environment_files_override_environment_and_later_files_win() {
    let c = cmd(
        "[Service]\nEnvironmentFile=/etc/a\nEnvironmentFile=-/etc/b\nEnvironment=A=unit B=unit C=unit\nExecStart=/bin/x ${A} ${B} ${C}\n",
        &[("/etc/a", Some("A=file-a\nB=file-a\n")), ("/etc/b", Some("B=file-b\n"))],
    )
    .unwrap();
    assert_eq!(args(&c), ["file-a", "file-b", "unit"]);
}

#[test]
fn a_missing_environment_file_is_ignored_only_with_the_dash() {
    let c = cmd(
        "[Service]\nEnvironmentFile=-/etc/none\nExecStart=/bin/x $A\n",
        &[("/etc/none", None)],
    )
    .unwrap();
    assert!(args(&c).is_empty());
    assert_eq!(c.missing_optional.len(), 1);
    let e = cmd(
        "[Service]\nEnvironmentFile=/etc/none\nExecStart=/bin/x\n",
        &[("/etc/none", None)],
    )
    .unwrap_err();
    assert!(e.message.contains("does not exist"), "{e}");
    assert_eq!(e.origin.line, 2);
    // Content not provided by the caller: an error, never a guess.
    let e = cmd("[Service]\nEnvironmentFile=/etc/x\nExecStart=/bin/x\n", &[]).unwrap_err();
    assert!(e.message.contains("was not given"), "{e}");
    // Relative paths and wildcards are refused.
    assert!(cmd("[Service]\nEnvironmentFile=etc/x\nExecStart=/bin/x\n", &[]).is_err());
    assert!(
        cmd(
            "[Service]\nEnvironmentFile=/etc/*.conf\nExecStart=/bin/x\n",
            &[]
        )
        .is_err()
    );
    // The empty assignment resets the list.
    let c = cmd(
        "[Service]\nEnvironmentFile=/etc/x\nEnvironmentFile=\nExecStart=/bin/x\n",
        &[],
    )
    .unwrap();
    assert!(c.args.is_empty());
}

#[test]
fn env_file_syntax() {
    assert_eq!(
        env_of(
            "# comment\n; comment\n\nA=1\n  B =  two words  \nno equals sign\nC=\nD='x \\ \" y'\n"
        ),
        pairs(&[
            ("A", "1"),
            ("B", "two words"),
            ("C", ""),
            ("D", "x \\ \" y")
        ])
    );
    // Double quotes: \" \\ \` \$ unescape, other escapes stay verbatim, backslash-newline
    // continues without the newline, and the value spans lines.
    assert_eq!(
        env_of("A=\"a \\\"q\\\" \\$x \\n \\\n  b\nc\"\n"),
        pairs(&[("A", "a \"q\" $x \\n   b\nc")])
    );
    // Unquoted: backslash keeps the next character, backslash-newline continues, quotes after
    // the first character are kept.
    assert_eq!(
        env_of("A=a\\ b \\\nc\nB=x\"y\"\n"),
        pairs(&[("A", "a b c"), ("B", "x\"y\"")])
    );
    // Single quotes span lines verbatim.
    assert_eq!(env_of("A='1\n2'\n"), pairs(&[("A", "1\n2")]));
    // Invalid names are ignored with a warning (`export` is not shell syntax here).
    let (vars, warnings) = parse_env_file("/e", "export A=1\n1X=2\nB=3");
    assert_eq!(vars.len(), 1);
    assert_eq!(warnings.len(), 2);
    assert_eq!(warnings[0].0.line, 1);
    // A comment ends at its newline even after a backslash (systemd ≥ 254).
    assert_eq!(env_of("# x \\\nA=1\n"), pairs(&[("A", "1")]));
    // An unclosed quote takes the rest of the file, with a warning.
    let (vars, warnings) = parse_env_file("/e", "A=\"open\nB=2\n");
    assert_eq!(vars[0].1.value, "open\nB=2\n");
    assert_eq!(warnings.len(), 1);
}

#[test]
fn words_of_a_multi_line_env_value_keep_their_line() {
    let c = cmd(
        "[Service]\nEnvironmentFile=-/etc/k.conf\nExecStart=/bin/x $ARGS\n",
        &[(
            "/etc/k.conf",
            Some("# c\nARGS=\"--a=1 \\\n    --b=2 \\\n    --c=3\"\n"),
        )],
    )
    .unwrap();
    assert_eq!(args(&c), ["--a=1", "--b=2", "--c=3"]);
    let lines: Vec<usize> = c.args.iter().map(|w| w.origin.line).collect();
    assert_eq!(lines, [2, 3, 4]);
    assert!(c.args.iter().all(|w| w.origin.file == "/etc/k.conf"));
}

#[test]
fn no_break_spaces_are_not_whitespace() {
    let c = cmd(
        "[Service]\nEnvironment=\"ARGS=--a=1 \u{a0}\u{a0} --b=2\u{a0}x\"\nExecStart=/bin/x $ARGS\n",
        &[],
    )
    .unwrap();
    assert_eq!(args(&c), ["--a=1", "\u{a0}\u{a0}", "--b=2\u{a0}x"]);
}

#[test]
fn exactly_one_exec_start_and_drop_ins_reset_it() {
    let e = cmd("[Service]\nExecStart=/bin/a\nExecStart=/bin/b\n", &[]).unwrap_err();
    assert_eq!(e.origin.line, 3);
    assert!(cmd("[Unit]\nDescription=x\n", &[]).is_err());
    assert!(cmd("[Service]\nExecStart=/bin/a ; /bin/b\n", &[]).is_err());
    // A drop-in replaces ExecStart with the empty assignment first.
    let u = parse_unit(
        "/etc/systemd/system/x.service",
        "[Service]\nExecStart=/bin/a --old\n",
        &[(
            "/etc/systemd/system/x.service.d/10-new.conf".to_string(),
            "[Service]\nExecStart=\nExecStart=/bin/a --new\n".to_string(),
        )],
    );
    let c = command(&u, &EnvFiles::new()).unwrap();
    assert_eq!(args(&c), ["--new"]);
    assert!(c.args[0].origin.file.ends_with("10-new.conf"));
}

#[test]
fn specifiers_from_the_unit_name() {
    let u = parse_unit(
        "/etc/systemd/system/kube-apiserver@a.service",
        "[Service]\nExecStart=/bin/%p --name=%i --unit=%n --pct=100%%\n",
        &[],
    );
    let c = command(&u, &EnvFiles::new()).unwrap();
    assert_eq!(c.path.text, "/bin/kube-apiserver");
    assert_eq!(
        args(&c),
        ["--name=a", "--unit=kube-apiserver@a.service", "--pct=100%"]
    );
    let u = unit("[Service]\nExecStart=/bin/x --home=%h\n");
    let e = command(&u, &EnvFiles::new()).unwrap_err();
    assert!(e.message.contains("%h"), "{e}");
}

#[test]
fn a_variable_executable_is_refused() {
    assert!(cmd("[Service]\nEnvironment=B=/bin/x\nExecStart=${B} --a\n", &[]).is_err());
}

#[test]
fn nothing_panics_on_odd_input() {
    for text in [
        "",
        "\\",
        "[",
        "[Service",
        "[Service]\nExecStart=",
        "[Service]\nExecStart=\\",
        "[Service]\nExecStart=/x \\x4",
        "[Service]\nExecStart=/x \\u12",
        "[Service]\nExecStart=/x \\0",
        "[Service]\nExecStart=/x ${",
        "[Service]\nExecStart=/x ${A:-",
        "[Service]\nExecStart=/x $",
        "[Service]\nExecStart=-",
        "[Service]\nEnvironment=\"",
        "\u{feff}[Service]\r\nExecStart=/x\r\n",
    ] {
        let _ = cmd(text, &[]);
    }
    for text in ["=", "A", "A=\\", "A=\"\\", "A='", "=x\n", "\u{a0}=1"] {
        let _ = parse_env_file("/e", text);
    }
}

proptest::proptest! {
    #[test]
    fn no_unit_or_env_file_makes_the_reader_panic(
        unit_text in "(\\[Service\\]\n)?((ExecStart|Environment|EnvironmentFile)=)?[ -~\t\n\\\\\"'$%{}\u{a0}]{0,80}",
        env_text in "[ -~\t\n\\\\\"'$\u{a0}]{0,60}",
    ) {
        let u = parse_unit("/u.service", &unit_text, &[]);
        let files: EnvFiles = u
            .environment_files()
            .unwrap_or_default()
            .into_iter()
            .map(|f| (f.path, Some(env_text.clone())))
            .collect();
        if let Ok(c) = command(&u, &files) {
            let _ = c.args.len();
        }
        let _ = parse_env_file("/e", &env_text);
    }
}
