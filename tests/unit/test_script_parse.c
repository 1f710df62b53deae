/* test_script_parse.c — unit tests of src/script/parse.c, cmdtab.c and
 * check.c: guestfish's line rules (comments, '-', '!', "<!", pipes, quotes
 * and escapes, here-documents, trailing blanks, the argument limit), the
 * command table, integers, attribute substitution in every position, and
 * the offline checker. */
/* cmocka needs these first, in this order */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>

#include <cmocka.h>

// clang-format on

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "script/attr.h"
#include "script/script.h"

/* ---- helpers ---------------------------------------------------------------- */

static struct script *parse(const char *text) {
  struct script *sc = NULL;
  assert_int_equal(script_parse(text, strlen(text), "t", &sc), 0);
  assert_non_null(sc);
  return sc;
}

/* Parse a text that must hold exactly one statement. */
static struct script *one(const char *text) {
  struct script *sc = parse(text);
  if (sc->n != 1) fail_msg("%s: %zu statements, want 1", text, sc->n);
  return sc;
}

/* The single statement must be a command `cmd` with exactly the given
 * arguments (NULL-terminated) and no error. */
static void expect_cmd(const char *text, const char *cmd, ...) {
  struct script *sc = one(text);
  struct script_stmt *st = &sc->stmts[0];
  if (st->error) fail_msg("%s: unexpected error %s", text, st->error);
  assert_int_equal(st->kind, SCRIPT_COMMAND);
  assert_string_equal(st->cmd, cmd);
  va_list ap;
  va_start(ap, cmd);
  int i = 0;
  const char *a;
  while ((a = va_arg(ap, const char *)) != NULL) {
    if (i >= st->argc) fail_msg("%s: only %d arguments", text, st->argc);
    assert_string_equal(st->argv[i], a);
    i++;
  }
  va_end(ap);
  if (i != st->argc) fail_msg("%s: %d arguments, want %d", text, st->argc, i);
  assert_null(st->argv[st->argc]);
  script_free(sc);
}

static void expect_error(const char *text, const char *msg) {
  struct script *sc = one(text);
  if (!sc->stmts[0].error) fail_msg("%s: no error, want \"%s\"", text, msg);
  assert_string_equal(sc->stmts[0].error, msg);
  script_free(sc);
}

static void expect_nothing(const char *text) {
  struct script *sc = parse(text);
  if (sc->n) fail_msg("\"%s\": %zu statements, want none", text, sc->n);
  script_free(sc);
}

/* ---- comments, blank lines, white space ------------------------------------- */

static void test_comments_blank(void **state) {
  (void)state;
  expect_nothing("");
  expect_nothing("\n\n\n");
  expect_nothing("# comment\n   # indented\n\t#tab\n");
  expect_nothing("   \n\t\t\n \r\v\f\n");
  expect_nothing("-\n- \n-# comment\n--\n");
  /* '#' later in a line is data */
  expect_cmd("echo a # b", "echo", "a", "#", "b", NULL);
  expect_cmd("echo #", "echo", "#", NULL);
  struct script *sc = parse("# c\n\necho 1\n  # d\necho 2\n");
  assert_int_equal(sc->n, 2);
  assert_int_equal(sc->stmts[0].line, 3);
  assert_int_equal(sc->stmts[1].line, 5);
  assert_int_equal(sc->lines, 5);
  script_free(sc);
}

static void test_leading_space(void **state) {
  (void)state;
  /* c_isspace: space, \t, \n, \v, \f, \r */
  expect_cmd(" \t\r\v\fecho hi", "echo", "hi", NULL);
  /* arguments are split on space and tab only */
  expect_cmd("echo a\vb\fc", "echo", "a\vb\fc", NULL);
  expect_cmd("echo\ta\t\tb", "echo", "a", "b", NULL);
}

static void test_trailing_blanks(void **state) {
  (void)state;
  expect_cmd("echo", "echo", NULL);
  expect_cmd("echo   ", "echo", NULL);
  expect_cmd("echo \t ", "echo", NULL);
  expect_cmd("mount /dev/sda1 / ", "mount", "/dev/sda1", "/", NULL);
  expect_cmd("mount /dev/sda1 /\t \t", "mount", "/dev/sda1", "/", NULL);
  expect_cmd("echo \"a\"  ", "echo", "a", NULL);
  expect_cmd("echo 'a'\t", "echo", "a", NULL);
  /* a carriage return is not a blank: it stays in the last word */
  expect_cmd("echo a\r", "echo", "a\r", NULL);
}

/* ---- the '-' prefix ------------------------------------------------------- */

static void test_dash_prefix(void **state) {
  (void)state;
  struct script *sc = one("-mount /dev/sda3 /");
  assert_true(sc->stmts[0].ignore_errors);
  assert_string_equal(sc->stmts[0].cmd, "mount");
  script_free(sc);
  sc = one("  - mount /dev/sda3 /");
  assert_true(sc->stmts[0].ignore_errors);
  assert_string_equal(sc->stmts[0].cmd, "mount");
  script_free(sc);
  sc = one("--mkdir-p /x");
  assert_true(sc->stmts[0].ignore_errors);
  assert_string_equal(sc->stmts[0].cmd, "mkdir-p");
  script_free(sc);
  sc = one("mount /dev/sda3 /");
  assert_false(sc->stmts[0].ignore_errors);
  script_free(sc);
  /* after '-' the rules start again: '!' and "<!" work behind it */
  sc = one("-!false");
  assert_int_equal(sc->stmts[0].kind, SCRIPT_SHELL);
  assert_true(sc->stmts[0].ignore_errors);
  assert_string_equal(sc->stmts[0].shell, "false");
  script_free(sc);
  sc = one("-<!echo mount /dev/sda1 /");
  assert_int_equal(sc->stmts[0].kind, SCRIPT_INLINE);
  assert_true(sc->stmts[0].ignore_errors);
  script_free(sc);
  /* a '-' inside or after the command word is data */
  expect_cmd("rm-rf -x", "rm-rf", "-x", NULL);
}

/* ---- host shells ------------------------------------------------------------ */

static void test_shell_lines(void **state) {
  (void)state;
  struct script *sc = one("!echo \"hi\" | tr a-z A-Z > ./x ");
  assert_int_equal(sc->stmts[0].kind, SCRIPT_SHELL);
  /* the rest of the line, verbatim (quotes, pipes, trailing blanks) */
  assert_string_equal(sc->stmts[0].shell, "echo \"hi\" | tr a-z A-Z > ./x ");
  assert_null(sc->stmts[0].cmd);
  script_free(sc);
  sc = one("  ! source ./x");
  assert_string_equal(sc->stmts[0].shell, " source ./x");
  assert_string_equal(sc->stmts[0].text, "  ! source ./x");
  script_free(sc);
  sc = one("<!cat ./guestfishmount");
  assert_int_equal(sc->stmts[0].kind, SCRIPT_INLINE);
  assert_string_equal(sc->stmts[0].shell, "cat ./guestfishmount");
  script_free(sc);
  sc = one("<! if [ a != b ] ; then echo 'mv /a /b' ; fi");
  assert_int_equal(sc->stmts[0].kind, SCRIPT_INLINE);
  assert_string_equal(sc->stmts[0].shell, " if [ a != b ] ; then echo 'mv /a /b' ; fi");
  script_free(sc);
  /* "< !" is not "<!": a command named "<" */
  expect_cmd("< !x", "<", "!x", NULL);
  /* an unterminated quote in a shell line is the shell's business */
  sc = one("!echo \"abc");
  assert_null(sc->stmts[0].error);
  script_free(sc);
}

/* ---- pipes ----------------------------------------------------------------- */

static void test_pipes(void **state) {
  (void)state;
  struct script *sc = one("list-filesystems | cat > ./list-fs");
  assert_int_equal(sc->stmts[0].argc, 0);
  assert_string_equal(sc->stmts[0].pipe, " cat > ./list-fs");
  script_free(sc);
  sc = one("cat /etc/os-release | awk -F '\"' '/^ID=/ {print $2}' > ./OS-Type");
  assert_int_equal(sc->stmts[0].argc, 1);
  assert_string_equal(sc->stmts[0].argv[0], "/etc/os-release");
  assert_string_equal(sc->stmts[0].pipe, " awk -F '\"' '/^ID=/ {print $2}' > ./OS-Type");
  script_free(sc);
  sc = one("inspect-os |cat");
  assert_string_equal(sc->stmts[0].pipe, "cat");
  script_free(sc);
  sc = one("cat /x |");
  assert_string_equal(sc->stmts[0].pipe, "");
  script_free(sc);
  sc = one("echo \"a b\" 'c' | wc -c");
  assert_int_equal(sc->stmts[0].argc, 2);
  assert_string_equal(sc->stmts[0].argv[0], "a b");
  assert_string_equal(sc->stmts[0].pipe, " wc -c");
  script_free(sc);
  /* '|' inside a word or a quoted string is data */
  sc = one("echo a|b \"c | d\"");
  assert_null(sc->stmts[0].pipe);
  assert_string_equal(sc->stmts[0].argv[0], "a|b");
  assert_string_equal(sc->stmts[0].argv[1], "c | d");
  script_free(sc);
  /* a quote error after the pipe does not matter: it is shell text */
  sc = one("cat /x | awk '{print}");
  assert_null(sc->stmts[0].error);
  script_free(sc);
}

/* ---- quoting ---------------------------------------------------------------- */

static void test_double_quote_escapes(void **state) {
  (void)state;
  expect_cmd("echo \"\\\\ \\a \\b \\f \\n \\r \\t \\v \\\" \\' \\?\"", "echo",
             "\\ \a \b \f \n \r \t \v \" ' ?", NULL);
  expect_cmd("echo \"\\101\\102\\103\"", "echo", "ABC", NULL);
  expect_cmd("echo \"\\001\\377\"", "echo", "\001\377", NULL);
  expect_cmd("echo \"\\x41\\x6a\\x6A\\xff\"", "echo", "Ajj\xff", NULL);
  expect_cmd("echo \"tab\\there\"", "echo", "tab\there", NULL);
  expect_cmd("echo \"\"", "echo", "", NULL);
  expect_cmd("echo \"a b\"\t\"c\"", "echo", "a b", "c", NULL);
  expect_cmd("echo \"# not a comment\"", "echo", "# not a comment", NULL);
  expect_cmd("echo \"'single' inside\"", "echo", "'single' inside", NULL);
  /* escapes guestfish rejects, with its offset (in the decoded string) */
  expect_error("echo \"\\q\"", "invalid escape sequence in string (starting at offset 0)");
  expect_error("echo \"ab\\t\\e\"", "invalid escape sequence in string (starting at offset 3)");
  expect_error("echo \"\\000\"", "invalid escape sequence in string (starting at offset 0)");
  expect_error("echo \"\\400\"", "invalid escape sequence in string (starting at offset 0)");
  expect_error("echo \"\\12\"", "invalid escape sequence in string (starting at offset 0)");
  expect_error("echo \"\\8\"", "invalid escape sequence in string (starting at offset 0)");
  expect_error("echo \"\\x00\"", "invalid escape sequence in string (starting at offset 0)");
  expect_error("echo \"\\x4\"", "invalid escape sequence in string (starting at offset 0)");
  expect_error("echo \"\\xg1\"", "invalid escape sequence in string (starting at offset 0)");
  expect_error("echo \"\\$HOME\"", "invalid escape sequence in string (starting at offset 0)");
  expect_error("echo \"abc\\", "invalid escape sequence in string (starting at offset 3)");
  /* termination and separation */
  expect_error("echo \"abc", "unterminated double quote");
  expect_error("echo \"abc\\\"", "unterminated double quote");
  expect_error("echo \"a\"b", "command arguments not separated by whitespace");
  expect_error("echo \"a\"|cat", "command arguments not separated by whitespace");
  expect_error("echo \"a\"\"b\"", "command arguments not separated by whitespace");
  expect_error("echo \"a\"\r", "command arguments not separated by whitespace");
}

static void test_single_quotes(void **state) {
  (void)state;
  expect_cmd("echo 'a\\tb \"c\" $d'", "echo", "a\\tb \"c\" $d", NULL);
  expect_cmd("echo ''", "echo", "", NULL);
  expect_cmd("echo 'a' 'b c'", "echo", "a", "b c", NULL);
  expect_error("echo 'abc", "unterminated single quote");
  expect_error("echo 'a'b", "command arguments not separated by whitespace");
  expect_error("echo 'a''b'", "command arguments not separated by whitespace");
}

static void test_bare_words(void **state) {
  (void)state;
  /* quotes are only special at the start of a word */
  expect_cmd("echo ab\"cd e'f", "echo", "ab\"cd", "e'f", NULL);
  expect_cmd("echo a\\tb", "echo", "a\\tb", NULL);
  /* the command word cannot be quoted: it is everything up to a blank */
  expect_cmd("\"echo\" x", "\"echo\"", "x", NULL);
  expect_cmd("echo\"x\" y", "echo\"x\"", "y", NULL);
  /* no tilde expansion, no variables */
  expect_cmd("echo ~ $HOME", "echo", "~", "$HOME", NULL);
}

static void test_too_many_arguments(void **state) {
  (void)state;
  char line[1024] = "echo";
  for (int i = 0; i < 63; i++)
    strcat(line, " a");
  struct script *sc = one(line);
  assert_null(sc->stmts[0].error);
  assert_int_equal(sc->stmts[0].argc, 63);
  script_free(sc);
  strcat(line, " | cat");
  sc = one(line);
  assert_null(sc->stmts[0].error);
  assert_int_equal(sc->stmts[0].argc, 63);
  assert_string_equal(sc->stmts[0].pipe, " cat");
  script_free(sc);
  strcpy(line, "echo");
  for (int i = 0; i < 64; i++)
    strcat(line, " a");
  expect_error(line, "too many arguments");
}

static void test_nul_byte(void **state) {
  (void)state;
  static const char text[] = "echo a\0b c\necho d\n";
  struct script *sc = NULL;
  assert_int_equal(script_parse(text, sizeof text - 1, "t", &sc), 0);
  assert_int_equal(sc->n, 2);
  assert_int_equal(sc->stmts[0].argc, 1);
  assert_string_equal(sc->stmts[0].argv[0], "a");
  assert_string_equal(sc->stmts[1].argv[0], "d");
  assert_int_equal(sc->stmts[1].line, 2);
  script_free(sc);
  /* not NUL-terminated input: len is what counts */
  assert_int_equal(script_parse("echo xyz", 6, "t", &sc), 0);
  assert_int_equal(sc->n, 1);
  assert_string_equal(sc->stmts[0].argv[0], "x");
  script_free(sc);
}

/* ---- here-documents ------------------------------------------------------- */

static void test_heredoc_basic(void **state) {
  (void)state;
  struct script *sc = parse("mount /dev/sda1 /\n"
                            "upload -<<EOF /EFI/BOOT/message.txt\n"
                            "\n"
                            "  Hello @x@ \"q\" 'q' $v `b`\n"
                            "# not a comment\n"
                            "!not a shell\n"
                            "cat <<\"EOF\" >> x\n"
                            "EOF \n"
                            " EOF\n"
                            "EOF\n"
                            "umount /\n");
  assert_int_equal(sc->n, 3);
  struct script_stmt *u = &sc->stmts[1];
  assert_null(u->error);
  assert_string_equal(u->cmd, "upload");
  assert_int_equal(u->heredoc_arg, 0);
  assert_string_equal(u->argv[0], "-<<EOF");
  assert_string_equal(u->argv[1], "/EFI/BOOT/message.txt");
  assert_string_equal(u->heredoc, "\n"
                                  "  Hello @x@ \"q\" 'q' $v `b`\n"
                                  "# not a comment\n"
                                  "!not a shell\n"
                                  "cat <<\"EOF\" >> x\n"
                                  "EOF \n"
                                  " EOF\n");
  assert_int_equal(u->heredoc_len, strlen(u->heredoc));
  assert_int_equal(u->line, 2);
  assert_int_equal(u->last_line, 10);
  assert_string_equal(sc->stmts[2].cmd, "umount");
  assert_int_equal(sc->stmts[2].line, 11);
  script_free(sc);
}

static void test_heredoc_edges(void **state) {
  (void)state;
  /* empty body: truncates a file */
  struct script *sc = one("upload -<<END /etc/resolv.conf\nEND\n");
  assert_string_equal(sc->stmts[0].heredoc, "");
  assert_int_equal(sc->stmts[0].heredoc_len, 0);
  script_free(sc);
  /* the marker on the last line without a newline */
  sc = one("upload -<<END /x\nabc\nEND");
  assert_null(sc->stmts[0].error);
  assert_string_equal(sc->stmts[0].heredoc, "abc\n");
  script_free(sc);
  /* missing marker: an error, and the rest of the script is the body */
  sc = one("upload -<<END /x\nabc\necho not run\nENDD\n");
  assert_string_equal(sc->stmts[0].error, "end of input reached without finding 'END'");
  assert_int_equal(sc->stmts[0].last_line, 4);
  script_free(sc);
  /* last body line without a newline and no marker */
  sc = one("upload -<<END /x\nabc");
  assert_non_null(sc->stmts[0].error);
  script_free(sc);
  /* a marker followed by blanks or CR is not the marker */
  sc = one("upload -<<END /x\nEND \nEND\r\nEND\n");
  assert_string_equal(sc->stmts[0].heredoc, "END \nEND\r\n");
  script_free(sc);
  /* markers of the corpus */
  sc = one("-upload -<<END_CREATE_UNATTEND /ISdeploy/x.xml\n<a/>\nEND_CREATE_UNATTEND\n");
  assert_true(sc->stmts[0].ignore_errors);
  assert_string_equal(sc->stmts[0].heredoc, "<a/>\n");
  script_free(sc);
  /* "-<<" without a marker: an error, nothing consumed */
  sc = parse("upload -<< /x\necho a\n");
  assert_int_equal(sc->n, 2);
  assert_string_equal(sc->stmts[0].error, "missing end marker in -<< expression");
  script_free(sc);
  /* the wrong argument count: guestfish never reads the here-document, so
   * its lines are script lines */
  sc = parse("upload -<<END\necho a\nEND\n");
  assert_int_equal(sc->n, 3);
  assert_int_equal(sc->stmts[0].heredoc_arg, -1);
  assert_string_equal(sc->stmts[1].cmd, "echo");
  assert_string_equal(sc->stmts[2].cmd, "END");
  script_free(sc);
  /* only a file argument takes a here-document */
  sc = parse("write /x -<<END\nEND\n");
  assert_int_equal(sc->n, 2);
  assert_null(sc->stmts[0].heredoc);
  script_free(sc);
  sc = parse("download -<<END /x\nEND\n");
  assert_int_equal(sc->n, 2);
  script_free(sc);
  /* an unknown command takes none either */
  sc = parse("uplaod -<<END /x\nEND\n");
  assert_int_equal(sc->n, 2);
  script_free(sc);
  /* a line with a syntax error runs nothing, so it reads none */
  sc = parse("upload -<<END \"/x\n  echo\nEND\n");
  assert_int_equal(sc->n, 3);
  script_free(sc);
  /* command lookup is case-insensitive, as in guestfish */
  sc = one("UPLOAD -<<E /x\nbody\nE\n");
  assert_string_equal(sc->stmts[0].heredoc, "body\n");
  script_free(sc);
  /* tar-in takes one too */
  sc = one("tar-in -<<E /dir\nxx\nE\n");
  assert_string_equal(sc->stmts[0].heredoc, "xx\n");
  script_free(sc);
  /* a quoted marker argument is the same argument */
  sc = one("upload \"-<<E\" /x\nyy\nE\n");
  assert_string_equal(sc->stmts[0].heredoc, "yy\n");
  script_free(sc);
  /* two here-documents in a row */
  sc = parse("upload -<<A /a\n1\nA\nupload -<<B /b\n2\nB\n");
  assert_int_equal(sc->n, 2);
  assert_string_equal(sc->stmts[0].heredoc, "1\n");
  assert_string_equal(sc->stmts[1].heredoc, "2\n");
  assert_int_equal(sc->stmts[1].line, 4);
  assert_int_equal(sc->stmts[1].last_line, 6);
  script_free(sc);
}

static void test_heredoc_nul(void **state) {
  (void)state;
  /* guestfish reads the body with fgets and strlen: a NUL ends the line's
   * content, and a marker line cut by a NUL still ends the document */
  static const char text[] = "upload -<<M /x\nab\0cd\nM\0junk\necho after\n";
  struct script *sc = NULL;
  assert_int_equal(script_parse(text, sizeof text - 1, "t", &sc), 0);
  assert_int_equal(sc->n, 2);
  assert_int_equal(sc->stmts[0].heredoc_len, 2);
  assert_memory_equal(sc->stmts[0].heredoc, "ab", 2);
  assert_string_equal(sc->stmts[1].cmd, "echo");
  script_free(sc);
}

/* ---- attribute substitution before parsing ---------------------------------- */

static struct script *subst_parse(const char *text, const char *values_json) {
  json_error_t je;
  json_t *v = json_loads(values_json, 0, &je);
  assert_non_null(v);
  char *s = attr_substitute(text, v);
  json_decref(v);
  assert_non_null(s);
  struct script *sc = parse(s);
  free(s);
  return sc;
}

static void test_attribute_positions(void **state) {
  (void)state;
  struct script *sc = subst_parse(
      "@Cmd@ @Dev@ \"@Quoted@\" '@Single@' x@Mid@y | @Pipe@\n"
      "!echo @Shell@\n"
      "<!echo @Inline@\n"
      "@Dash@mount /dev/sda1 /\n"
      "upload -<<@Marker@ /etc/@File@\n"
      "HOSTNAME=@HostName@.@DomainName:example.com@\n"
      "END\n"
      "@DeploymentTesting:Fail_OS_Deployment@\n",
      "{\"Cmd\":\"echo\",\"Dev\":\"/dev/sda\",\"Quoted\":\"a b\",\"Single\":\"c\\\\td\","
      "\"Mid\":\"M\",\"Pipe\":\"cat > x\",\"Shell\":\"hi\",\"Inline\":\"mkdir /y\","
      "\"Dash\":\"-\",\"Marker\":\"END\",\"File\":\"hostname\",\"HostName\":\"web01\"}");
  assert_int_equal(sc->n, 6);
  struct script_stmt *st = &sc->stmts[0];
  assert_string_equal(st->cmd, "echo");
  assert_int_equal(st->argc, 4);
  assert_string_equal(st->argv[0], "/dev/sda");
  assert_string_equal(st->argv[1], "a b");
  assert_string_equal(st->argv[2], "c\\td");
  assert_string_equal(st->argv[3], "xMy");
  assert_string_equal(st->pipe, " cat > x");
  assert_string_equal(sc->stmts[1].shell, "echo hi");
  assert_string_equal(sc->stmts[2].shell, "echo mkdir /y");
  assert_true(sc->stmts[3].ignore_errors);
  assert_string_equal(sc->stmts[4].argv[1], "/etc/hostname");
  assert_string_equal(sc->stmts[4].heredoc, "HOSTNAME=web01.example.com\n");
  /* the Developer bundle's "attempt or fail" line: the default is an
   * unknown command */
  assert_string_equal(sc->stmts[5].cmd, "Fail_OS_Deployment");
  assert_null(sc->stmts[5].def);
  script_free(sc);

  /* ... and its other option turns the line into a comment */
  sc = subst_parse("@DeploymentTesting:Fail_OS_Deployment@\n",
                   "{\"DeploymentTesting\":\"#Attempt_OS_Deployment\"}");
  assert_int_equal(sc->n, 0);
  script_free(sc);

  /* substitution is textual: a value with a quote changes the quoting */
  sc = subst_parse("echo \"@V@\"\n", "{\"V\":\"a\\\"b\"}");
  assert_string_equal(sc->stmts[0].error, "command arguments not separated by whitespace");
  script_free(sc);
  /* an empty value is an empty string; "${a[@]}" and "$@" are not tokens */
  sc = subst_parse("echo \"@Empty@\" \"${a[@]}\" \"$@\" user@host\n", "{}");
  assert_int_equal(sc->stmts[0].argc, 4);
  assert_string_equal(sc->stmts[0].argv[0], "");
  assert_string_equal(sc->stmts[0].argv[1], "${a[@]}");
  assert_string_equal(sc->stmts[0].argv[2], "$@");
  assert_string_equal(sc->stmts[0].argv[3], "user@host");
  script_free(sc);
  /* a value with a newline adds a line */
  sc = subst_parse("echo @V@\n", "{\"V\":\"a\\nmkdir /b\"}");
  assert_int_equal(sc->n, 2);
  assert_string_equal(sc->stmts[1].cmd, "mkdir");
  script_free(sc);
}

/* ---- commands and integers ---------------------------------------------------- */

static void test_cmd_lookup(void **state) {
  (void)state;
  const struct script_cmd *d = script_cmd_find("mkdir-p");
  assert_non_null(d);
  assert_string_equal(d->name, "mkdir-p");
  assert_ptr_equal(script_cmd_find("MKDIR_P"), d);
  assert_ptr_equal(script_cmd_find("Mkdir-P"), d);
  assert_string_equal(script_cmd_find("unmount")->name, "umount");
  assert_string_equal(script_cmd_find("UNMOUNT_ALL")->name, "umount-all");
  assert_string_equal(script_cmd_find("list_filesystems")->name, "list-filesystems");
  assert_null(script_cmd_find("Intentionally_Fail_OS_Deployment"));
  assert_null(script_cmd_find(""));
  assert_null(script_cmd_find(NULL));
  char longname[200];
  memset(longname, 'a', sizeof longname - 1);
  longname[sizeof longname - 1] = 0;
  assert_null(script_cmd_find(longname));
  assert_int_equal(script_cmd_find("upload")->filein_arg, 0);
  assert_int_equal(script_cmd_find("command")->cls, SCRIPT_CMD_GUEST);
  /* the table is sorted and every entry finds itself */
  size_t n;
  const struct script_cmd *all = script_cmd_all(&n);
  assert_true(n > 60);
  for (size_t i = 0; i < n; i++) {
    assert_ptr_equal(script_cmd_find(all[i].name), &all[i]);
    if (i) assert_true(strcmp(all[i - 1].name, all[i].name) < 0);
    assert_true(all[i].max_args < 0 || all[i].max_args >= all[i].min_args);
  }
  /* every command of hpe-artifacts.md §3 and §6 is known */
  static const char *const corpus[] = {"echo",
                                       "upload",
                                       "download",
                                       "mkdir-p",
                                       "rm-f",
                                       "cat",
                                       "rm-rf",
                                       "mount",
                                       "list-filesystems",
                                       "chmod",
                                       "umount",
                                       "vgs",
                                       "lvs",
                                       "copy-out",
                                       "unmount",
                                       "command",
                                       "copy-in",
                                       "statvfs",
                                       "mkdir",
                                       "list-devices",
                                       "glob",
                                       "list-partitions",
                                       "touch",
                                       "rm",
                                       "ls",
                                       "version",
                                       "inspect-os",
                                       "unmount-all",
                                       "ln-s",
                                       "compress-out",
                                       "cp-a",
                                       "write-append",
                                       "ln-f",
                                       "cp",
                                       "vgrename",
                                       "mv",
                                       "inspect-get-osinfo",
                                       "inspect-get-distro",
                                       NULL};
  for (int i = 0; corpus[i]; i++)
    if (!script_cmd_find(corpus[i])) fail_msg("%s is not known", corpus[i]);
}

static void test_parse_int(void **state) {
  (void)state;
  int64_t v;
  char why[128];
  assert_int_equal(script_parse_int("0755", &v, why, sizeof why), 0);
  assert_int_equal(v, 0755);
  assert_int_equal(script_parse_int("755", &v, why, sizeof why), 0);
  assert_int_equal(v, 755);
  assert_int_equal(script_parse_int("0x1ed", &v, why, sizeof why), 0);
  assert_int_equal(v, 0x1ed);
  assert_int_equal(script_parse_int("0", &v, why, sizeof why), 0);
  assert_int_equal(v, 0);
  assert_int_equal(script_parse_int("-1", &v, why, sizeof why), 0);
  assert_int_equal(v, -1);
  assert_int_equal(script_parse_int("1k", &v, why, sizeof why), 0);
  assert_int_equal(v, 1024);
  assert_int_equal(script_parse_int("2M", &v, why, sizeof why), 0);
  assert_int_equal(v, 2 * 1024 * 1024);
  assert_int_equal(script_parse_int("1KiB", &v, why, sizeof why), 0);
  assert_int_equal(v, 1024);
  assert_int_equal(script_parse_int("1KB", &v, why, sizeof why), 0);
  assert_int_equal(v, 1000);
  assert_int_equal(script_parse_int("abc", &v, why, sizeof why), -1);
  assert_string_equal(why, "\"abc\" is not a number");
  assert_int_equal(script_parse_int("", &v, why, sizeof why), -1);
  assert_int_equal(script_parse_int("12q", &v, why, sizeof why), -1);
  assert_int_equal(script_parse_int("1kx", &v, why, sizeof why), -1);
  assert_int_equal(script_parse_int("0789", &v, why, sizeof why), -1);
  assert_int_equal(script_parse_int("99999999999999999999", &v, why, sizeof why), -1);
  assert_int_equal(script_parse_int("9000000000000E", &v, why, sizeof why), -1);
}

/* ---- the offline checker ---------------------------------------------------- */

struct found {
  char text[4096];
};
static void collect(void *opaque, const char *name, int line, enum script_severity sev,
                    const char *msg) {
  struct found *f = opaque;
  static const char *const l[] = {"note", "warning", "error"};
  size_t n = strlen(f->text);
  snprintf(f->text + n, sizeof f->text - n, "%s:%d: %s: %s\n", name, line, l[sev], msg);
}

static void test_check(void **state) {
  (void)state;
  static const char script[] = "# header\n"
                               "mount /dev/sda1 /\n"
                               "chmod 755 /etc/rc.d/rc.local\n"
                               "chmod 0755 /x\n"
                               "chmod rwx /y\n"
                               "mount /dev/sda1\n"
                               "echo \"bad \\q\"\n"
                               "-frobnicate /x\n"
                               "upload -<<END /etc/hostname\n"
                               "not a command\n"
                               "END\n"
                               "@Action:Fail@\n"
                               "command /tmp/x.sh\n"
                               "glob rm-rf /etc/ssh/ssh_host_*\n"
                               "glob rm-frf /x*\n"
                               "compress-out zip /a ./a.zip\n"
                               "write /x -<<END\n"
                               "chown root 0 /x\n";
  struct found f = {""};
  int n = script_check(script, strlen(script), "s.txt", NULL, collect, &f);
  assert_int_equal(n, 7);
  assert_string_equal(
      f.text,
      "s.txt:3: warning: chmod 755: guestfish reads the mode as the decimal number 755 (octal "
      "01363); write 0755 for the octal mode\n"
      "s.txt:5: error: chmod: mode: \"rwx\" is not a number\n"
      "s.txt:6: error: mount: incorrect number of arguments (1); usage: mount mountable "
      "mountpoint\n"
      "s.txt:7: error: invalid escape sequence in string (starting at offset 4)\n"
      "s.txt:8: error: unknown command \"frobnicate\" (the '-' prefix makes it non-fatal when "
      "run)\n"
      "s.txt:12: note: the command \"@Action:Fail@\" is an attribute value: it is known only "
      "when the script runs\n"
      "s.txt:13: note: command runs a program of the guest: Streamer hands such a session to "
      "guestfish (Debian package libguestfs-tools)\n"
      "s.txt:15: error: unknown command \"rm-frf\"\n"
      "s.txt:16: error: compress-out: unknown compression type \"zip\" (compress, gzip, bzip2, "
      "xz, lzop)\n"
      "s.txt:17: warning: write: argument 2 \"-<<END\" is not a here-document (only a file "
      "argument can be one): the lines after it are script lines\n"
      "s.txt:18: error: chown: owner: \"root\" is not a number\n");

  /* with values, tokens are substituted first; unknown ones stay */
  json_t *v = json_pack("{s:s}", "Action", "#skip");
  f.text[0] = 0;
  static const char s2[] = "@Action:Fail@\nmkdir-p @Dir@\n";
  assert_int_equal(script_check(s2, strlen(s2), "s2", v, collect, &f), 0);
  assert_string_equal(f.text, "");
  json_object_set_new(v, "Action", json_string("Fail_OS_Deployment"));
  assert_int_equal(script_check(s2, strlen(s2), "s2", v, collect, &f), 1);
  assert_string_equal(f.text, "s2:1: error: unknown command \"Fail_OS_Deployment\"\n");
  json_decref(v);
  /* no callback: the count only */
  assert_int_equal(script_check("x\ny\n", 4, NULL, NULL, NULL, NULL), 2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_comments_blank),
      cmocka_unit_test(test_leading_space),
      cmocka_unit_test(test_trailing_blanks),
      cmocka_unit_test(test_dash_prefix),
      cmocka_unit_test(test_shell_lines),
      cmocka_unit_test(test_pipes),
      cmocka_unit_test(test_double_quote_escapes),
      cmocka_unit_test(test_single_quotes),
      cmocka_unit_test(test_bare_words),
      cmocka_unit_test(test_too_many_arguments),
      cmocka_unit_test(test_nul_byte),
      cmocka_unit_test(test_heredoc_basic),
      cmocka_unit_test(test_heredoc_edges),
      cmocka_unit_test(test_heredoc_nul),
      cmocka_unit_test(test_attribute_positions),
      cmocka_unit_test(test_cmd_lookup),
      cmocka_unit_test(test_parse_int),
      cmocka_unit_test(test_check),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
