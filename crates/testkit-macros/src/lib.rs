//! `#[root_test]`: a test that needs root (network namespaces, links) and iproute2, and
//! skips loudly without them. Written against `proc_macro` alone: all it does is put a
//! guard in front of the body, which needs no parser.

use proc_macro::{Delimiter, Group, Ident, Literal, Punct, Spacing, Span, TokenStream, TokenTree};

/// Marks a `#[test]` that runs only as root with iproute2 installed. Otherwise it prints
/// `SKIP <module>::<test>: <why>` on stderr and returns (passes), so a run without
/// privileges says what it did not test instead of failing or hiding it.
///
/// String arguments name further commands the test needs on `PATH`
/// (`#[root_test("nft", "busybox")]`), `reference` asks for Debian's reference CNI
/// plugins (which the test then finds with `oxivirt_testkit::reference_plugins()`), and
/// `vm` for what a test that runs VMs needs (a registry for the containerDisk and skopeo
/// to fill it, QEMU and qemu-img, nft, nsenter: [`VM_TOOLS`]); a missing one skips the
/// same way. A test returning `Result` skips with `Ok(())`.
#[proc_macro_attribute]
pub fn root_test(attr: TokenStream, item: TokenStream) -> TokenStream {
    match expand(attr, item) {
        Ok(ts) => ts,
        Err(msg) => compile_error(&msg),
    }
}

fn expand(attr: TokenStream, item: TokenStream) -> Result<TokenStream, String> {
    let needs = Needs::parse(attr)?;
    let mut tokens: Vec<TokenTree> = item.into_iter().collect();
    let name = fn_name(&tokens).ok_or("#[root_test] goes on a `fn`")?;
    let Some(TokenTree::Group(body)) = tokens.pop() else {
        return Err("#[root_test]: the function has no body".into());
    };
    if body.delimiter() != Delimiter::Brace {
        return Err("#[root_test]: the function has no body".into());
    }
    let test = format!("concat!(module_path!(), \"::{name}\")");
    let ret = if returns_value(&tokens) {
        "return Ok(());"
    } else {
        "return;"
    };
    let mut guard = format!(
        "if !::oxivirt_testkit::require_root({test}, &[{}]) {{ {ret} }}",
        needs.tools.join(", ")
    );
    if needs.reference {
        guard.push_str(&format!(
            "if ::oxivirt_testkit::reference_plugins_or_skip({test}).is_none() {{ {ret} }}"
        ));
    }
    let guard: TokenStream = guard.parse().map_err(|e| format!("#[root_test]: {e}"))?;
    let mut new_body = guard;
    new_body.extend(body.stream());
    let mut out: TokenStream = "#[test]"
        .parse()
        .map_err(|e| format!("#[root_test]: {e}"))?;
    out.extend(tokens);
    out.extend([TokenTree::Group(Group::new(Delimiter::Brace, new_body))]);
    Ok(out)
}

/// What `vm` stands for.
const VM_TOOLS: [&str; 6] = [
    "docker-registry",
    "skopeo",
    "qemu-system-x86_64",
    "qemu-img",
    "nft",
    "nsenter",
];

/// What the attribute asks for besides root and iproute2.
struct Needs {
    /// Commands, as string literals in source form (quotes included).
    tools: Vec<String>,
    reference: bool,
}

impl Needs {
    fn parse(attr: TokenStream) -> Result<Self, String> {
        let mut needs = Needs {
            tools: Vec::new(),
            reference: false,
        };
        for tt in attr {
            match tt {
                TokenTree::Literal(l) if l.to_string().starts_with('"') => {
                    needs.tools.push(l.to_string())
                }
                TokenTree::Ident(i) if i.to_string() == "reference" => needs.reference = true,
                TokenTree::Ident(i) if i.to_string() == "vm" => needs
                    .tools
                    .extend(VM_TOOLS.iter().map(|t| format!("{t:?}"))),
                TokenTree::Punct(p) if p.as_char() == ',' => {}
                other => {
                    return Err(format!(
                        "#[root_test]: expected `reference`, `vm` or command names as strings, \
                         found `{other}`"
                    ))
                }
            }
        }
        Ok(needs)
    }
}

/// Whether the signature has `->`: such a test returns `Result`, and its skip is `Ok(())`.
fn returns_value(tokens: &[TokenTree]) -> bool {
    tokens.windows(2).any(|w| match w {
        [TokenTree::Punct(a), TokenTree::Punct(b)] => a.as_char() == '-' && b.as_char() == '>',
        _ => false,
    })
}

/// The identifier after `fn`.
fn fn_name(tokens: &[TokenTree]) -> Option<String> {
    let at = tokens
        .iter()
        .position(|t| matches!(t, TokenTree::Ident(i) if i.to_string() == "fn"))?;
    match tokens.get(at + 1)? {
        TokenTree::Ident(i) => Some(i.to_string()),
        _ => None,
    }
}

fn compile_error(msg: &str) -> TokenStream {
    let span = Span::call_site();
    let mut args = TokenStream::new();
    args.extend([TokenTree::Literal(Literal::string(msg))]);
    TokenStream::from_iter([
        TokenTree::Ident(Ident::new("compile_error", span)),
        TokenTree::Punct(Punct::new('!', Spacing::Alone)),
        TokenTree::Group(Group::new(Delimiter::Parenthesis, args)),
        TokenTree::Punct(Punct::new(';', Spacing::Alone)),
    ])
}
